// The dashboard's only script (the CSP forbids inline script): transcript words that
// seek the recording, the phone menu, live pages, keyboard shortcuts on the review page,
// and the text of a form whose session ended before it was sent.
"use strict";

function seekableTranscripts() {
  for (const card of document.querySelectorAll("[data-recording]")) {
    if (card.dataset.wired) continue;
    card.dataset.wired = "1";
    const audio = card.querySelector("audio");
    const words = Array.from(card.querySelectorAll(".word[data-start]"));
    if (!audio || !words.length) continue;
    for (const word of words) {
      word.addEventListener("click", () => {
        audio.currentTime = parseFloat(word.dataset.start) || 0;
        audio.play().catch(() => {});
      });
    }
    audio.addEventListener("timeupdate", () => {
      const t = audio.currentTime;
      let current = null;
      for (const word of words) {
        if (parseFloat(word.dataset.start) <= t) current = word;
      }
      for (const word of words) word.classList.toggle("playing", word === current && !audio.paused);
    });
  }
}

function phoneMenu() {
  const top = document.getElementById("top");
  const toggle = document.getElementById("menu-toggle");
  if (!top || !toggle) return;
  toggle.addEventListener("click", () => {
    const open = top.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
}

// --- live pages: poll /live, swap the regions that changed --------------------------

const baseTitle = document.title.replace(/^\(\d+\) /, "");

function showWaiting(count) {
  document.title = (count ? `(${count}) ` : "") + baseTitle;
  for (const badge of document.querySelectorAll("[data-live-count]")) {
    badge.textContent = count ? String(count) : "";
    badge.hidden = !count;
  }
}

function busy(region) {
  // Never pull the page from under the engineer: typing, or listening to a recording.
  if (region.contains(document.activeElement) && document.activeElement !== document.body) return true;
  return Array.from(region.querySelectorAll("audio")).some((a) => !a.paused);
}

async function refreshRegions() {
  const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } });
  if (!response.ok) return false;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  let complete = true;
  for (const next of fresh.querySelectorAll("[data-live-region]")) {
    const current = document.getElementById(next.id);
    if (!current || current.innerHTML === next.innerHTML) continue;
    if (busy(current)) {
      complete = false;
      continue;
    }
    current.replaceWith(document.importNode(next, true));
  }
  seekableTranscripts();
  return complete;
}

function notifyNew(newest) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const note = new Notification("Новая голосовая заявка", {
    body: `Заявка ${newest.number} ждёт разбора`,
    tag: `voicemail-${newest.id}`,
  });
  note.addEventListener("click", () => {
    window.focus();
    location.href = `/requests/${newest.number}`;
  });
}

function notificationButton() {
  const button = document.getElementById("notify-on");
  if (!button || !("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  button.addEventListener("click", () => {
    Notification.requestPermission().then(() => {
      button.hidden = true;
    });
  });
}

// --- a session that ends while the engineer is typing -------------------------------

function notice(kind, ...parts) {
  const box = document.createElement("div");
  box.className = `flash ${kind}`;
  box.setAttribute("role", kind === "warn" ? "alert" : "status");
  box.append(...parts);
  document.querySelector("main").prepend(box);
  return box;
}

function sessionEnded() {
  if (document.getElementById("session-ended")) return;
  const login = document.createElement("a");
  login.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  login.target = "_blank"; // this page, and what is typed in it, stays as it is
  login.textContent = "Войдите снова";
  const after = ", чтобы не потерять введённый текст. Вход откроется в новой вкладке.";
  const box = notice("warn", "Сеанс завершён. ", login, after);
  box.id = "session-ended"; // fixed at the bottom (app.css)
}

async function sessionBack() {
  // Logged in again in another tab: the new session has a new CSRF token.
  const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } });
  if (!response.ok || response.redirected) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const token = fresh.querySelector("input[name=csrf_token]");
  if (!token) return;
  for (const input of document.querySelectorAll("input[name=csrf_token]")) input.value = token.value;
  document.getElementById("session-ended").remove();
}

const SENT = "hotline.sent";

function keepUnsentText() {
  // A form's text is kept until the next page says whether it arrived: the login page
  // (the session had ended) or an error page means it did not, and the text waits for
  // its form's page to come back.
  const sent = sessionStorage.getItem(SENT);
  sessionStorage.removeItem(SENT);
  if (sent && document.querySelector("[data-not-sent]")) {
    const { page, fields } = JSON.parse(sent);
    sessionStorage.setItem(`hotline.draft:${page}`, JSON.stringify(fields));
  }
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.method !== "post") return;
    const fields = {};
    for (const area of form.querySelectorAll("textarea[name]")) {
      if (area.value.trim()) fields[area.name] = area.value;
    }
    if (Object.keys(fields).length) {
      const page = location.pathname + location.search;
      sessionStorage.setItem(SENT, JSON.stringify({ page, fields: { [form.action]: fields } }));
    }
  });
  const key = `hotline.draft:${location.pathname}${location.search}`;
  const draft = JSON.parse(sessionStorage.getItem(key) || "null");
  sessionStorage.removeItem(key);
  let restored = false;
  for (const form of document.querySelectorAll("form[method=post]")) {
    for (const [name, text] of Object.entries((draft && draft[form.action]) || {})) {
      const area = form.querySelector(`textarea[name="${CSS.escape(name)}"]`);
      if (area) {
        area.value = text;
        restored = true;
      }
    }
  }
  if (restored) {
    notice("info", "Текст, который не удалось отправить, восстановлен. Проверьте его и отправьте снова.");
  }
}

function livePage() {
  const body = document.body.dataset;
  if (!body.liveUrl) return;
  let stamp = body.liveStamp;
  let newest = parseInt(body.liveNewest, 10) || 0;
  const every = Math.max(parseInt(body.liveEvery, 10) || 5000, 200);
  const query = new URLSearchParams({ scope: body.liveScope || "page", number: body.liveNumber || "" });
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const response = await fetch(`${body.liveUrl}?${query}`, { credentials: "same-origin" });
      const json = (response.headers.get("Content-Type") || "").includes("json");
      // The login page (the poll is sent there once the session ends), or a 401.
      if (response.status === 401 || (response.ok && !json)) sessionEnded();
      if (!response.ok || !json) return;
      if (document.getElementById("session-ended")) await sessionBack();
      const live = await response.json();
      showWaiting(live.waiting);
      if (live.newest && live.newest.id > newest) notifyNew(live.newest);
      newest = live.newest ? Math.max(newest, live.newest.id) : newest;
      if (live.stamp !== stamp && body.liveScope !== "page") {
        if (await refreshRegions()) stamp = live.stamp;
      } else {
        stamp = live.stamp;
      }
    } catch (e) {
      // The server is restarting or the network is down: try again at the next tick.
    } finally {
      running = false;
    }
  };
  setInterval(tick, every);
}

// --- the review page's keyboard -----------------------------------------------------

function typing(target) {
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}

function reviewKeys() {
  const page = document.querySelector("[data-shortcuts]");
  if (!page) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey && event.key === "Enter") {
      const form = event.target.closest && event.target.closest("form[data-save]");
      if (form) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    const audio = document.querySelector("[data-recording] audio");
    if (event.key === "k" || event.key === "л" || (event.key === " " && audio)) {
      if (!audio) return;
      event.preventDefault();
      if (audio.paused) audio.play().catch(() => {});
      else audio.pause();
    } else if (event.key === "j" || event.key === "о") {
      const next = document.querySelector("a[data-next-voicemail]");
      if (next) {
        event.preventDefault();
        location.href = next.href;
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  keepUnsentText();
  seekableTranscripts();
  phoneMenu();
  notificationButton();
  livePage();
  reviewKeys();
});
