// Transcript words seek the recording: a click plays from the word, and the word
// being played is highlighted. Loaded as a file because the CSP forbids inline script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const card of document.querySelectorAll("[data-recording]")) {
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
});
