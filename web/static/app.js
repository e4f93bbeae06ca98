// The dashboard's only script (the CSP forbids inline script): transcript words that
// seek the recording, the phone menu, live pages, keyboard shortcuts on the review page.
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
      if (!response.ok || !(response.headers.get("Content-Type") || "").includes("json")) return;
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
  seekableTranscripts();
  phoneMenu();
  notificationButton();
  livePage();
  reviewKeys();
});
