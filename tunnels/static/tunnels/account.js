// The account page (templates/tunnels/account/account.html): every few seconds it asks
// account/data for its fragments and swaps in the ones that changed, so live tunnels,
// traffic, tokens and names update without a reload. Each request has a deadline; after an
// error it waits longer each time (up to MAX_WAIT_MS), and a signed-out answer (401) sends
// the page to the sign-in. It pauses while the tab is hidden (as inspector.js does) and asks
// at once when the tab shows again. Written by hand: no framework, no CDN.
(function () {
  "use strict";
  const script = document.currentScript;
  const url = script.dataset.url;
  const every = Number(script.dataset.pollMs) || 2000;
  const DEADLINE_MS = 5000;
  const MAX_WAIT_MS = 30000;
  const status = document.getElementById("live-status");
  const parts = {};
  document.querySelectorAll("[data-fragment]").forEach(function (element) {
    parts[element.dataset.fragment] = element;
  });
  const CSRF_VALUE = /name="csrfmiddlewaretoken" value="[^"]*"/g;
  const shown = {};
  let wait = every;
  let timer = null;  // the next refresh, when one is scheduled
  let asking = false;  // a refresh in flight: it schedules the next itself

  function schedule(ms) {
    if (timer === null && !asking && !document.hidden) timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    timer = null;
    if (document.hidden) return;  // visibilitychange starts it again
    asking = true;
    const controller = new AbortController();
    const deadline = setTimeout(function () { controller.abort(); }, DEADLINE_MS);
    try {
      const answer = await fetch(url, {
        headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store",
        signal: controller.signal,
      });
      if (answer.status === 401) {
        window.location.reload();  // the page itself redirects to the sign-in
        return;
      }
      const type = answer.headers.get("Content-Type") || "";
      if (!answer.ok || !type.startsWith("application/json")) {
        throw new Error("HTTP " + answer.status);
      }
      const data = await answer.json();
      for (const [key, element] of Object.entries(parts)) {
        const html = data.html[key];
        if (html === undefined) continue;
        // Unchanged parts keep their DOM (and a click on their buttons): the CSRF field is
        // masked afresh on every render, so it is left out of the comparison.
        const same = html.replace(CSRF_VALUE, "");
        if (shown[key] !== same) {
          element.innerHTML = html;
          shown[key] = same;
        }
      }
      status.textContent = "Live";
      status.classList.remove("stale");
      status.dataset.updates = String(Number(status.dataset.updates || 0) + 1);
      wait = every;
    } catch (error) {
      const why = error.name === "AbortError" ? "no answer in time" : error.message;
      status.textContent = "Not updating (" + why + "); trying again";
      status.classList.add("stale");
      wait = Math.min(wait * 2, MAX_WAIT_MS);
    } finally {
      clearTimeout(deadline);
      asking = false;
    }
    schedule(wait);
  }
  schedule(every);

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (timer !== null) { clearTimeout(timer); timer = null; }
    } else {
      schedule(0);
    }
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const text = document.getElementById(button.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy"; }
    );
  });
})();
