/* The request inspector's page (templates/tunnels/account/tunnel.html; tunnels/inspector.py).
 * Written by hand, no CDN. Reads and replays a tunnel's kept exchanges through the tunnel API
 * (relay.protocol.INSPECT_PATH). Captured traffic is hostile: every captured string goes into
 * the page with textContent or DOM APIs, never innerHTML. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("inspector-config").textContent);
  const $ = (id) => document.getElementById(id);
  const MAX_BACKOFF_MS = 30000;

  const tbody = document.querySelector("#inspector-requests tbody");
  const rows = new Map(); // id -> <tr>, newest first in the DOM
  let newest = 0;
  let timer = null;
  let backoff = config.poll_ms;
  let openId = null;
  let openDetail = null;

  // --- small helpers -----------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child); // strings become text nodes
      }
    }
    return node;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    if (bytes < 1024) return bytes + " B";
    const units = ["KiB", "MiB", "GiB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (value >= 10 ? Math.round(value) : value.toFixed(1)) + " " + units[unit];
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
  }

  function statusClass(status) {
    if (status === null || status === undefined) return "s-none";
    return "s-" + String(status)[0] + "xx";
  }

  function statusText(summary) {
    if (summary.status === null || summary.status === undefined) {
      return summary.error ? "failed" : "no answer";
    }
    return String(summary.status);
  }

  function bytesOf(b64) {
    const raw = atob(b64 || "");
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function b64Of(text) {
    const data = new TextEncoder().encode(text);
    let raw = "";
    for (let i = 0; i < data.length; i += 0x8000) {
      raw += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
    }
    return btoa(raw);
  }

  function asText(data) {
    try { return new TextDecoder("utf-8", { fatal: true }).decode(data); } catch (e) { return null; }
  }

  function header(headers, name) {
    const wanted = name.toLowerCase();
    for (const [key, value] of headers || []) {
      if (key.toLowerCase() === wanted) return value;
    }
    return "";
  }

  async function call(url, options, deadlineMs) {
    const abort = new AbortController();
    const stop = setTimeout(() => abort.abort(), deadlineMs);
    try {
      const response = await fetch(url, { credentials: "same-origin", ...options, signal: abort.signal });
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      return { status: response.status, body };
    } catch (e) {
      return { status: 0, body: { message: e.name === "AbortError" ? "The relay did not answer in time." : "The relay could not be reached." } };
    } finally {
      clearTimeout(stop);
    }
  }

  function say(text) { $("inspector-status").textContent = text; }

  // --- the list ----------------------------------------------------------------------------
  function rowFor(summary) {
    const status = el("span", { class: "badge " + statusClass(summary.status), text: statusText(summary) });
    if (summary.error) status.title = summary.error;
    // Any visitor chooses the method and path (8,000 characters, if they like): each cell
    // shows what fits, with an ellipsis, and the whole text in its title.
    const path = el("td", { class: "path", title: summary.path }, el("span", { class: "clip", text: summary.path }));
    if (summary.replay_of) path.append(el("span", { class: "tag", text: "replay of #" + summary.replay_of }));
    const row = el(
      "tr",
      { class: "request", tabindex: "0", "data-id": String(summary.id) },
      el("td", { class: "method", title: summary.method }, el("span", { class: "clip", text: summary.method })),
      path,
      el("td", {}, status),
      el("td", { class: "num", text: duration(summary.duration_ms) }),
      el("td", { class: "num", text: size(summary.request_bytes) }),
      el("td", { class: "num", text: size(summary.response_bytes) }),
      el("td", { class: "at", text: new Date(summary.at * 1000).toLocaleTimeString() }),
    );
    row.addEventListener("click", () => open(summary.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(summary.id); }
    });
    return row;
  }

  function add(summaries) {
    // Newest first from the API: insert from the oldest of them so the newest ends on top.
    for (const summary of summaries.slice().reverse()) {
      if (rows.has(summary.id)) continue;
      const row = rowFor(summary);
      if (summary.id === openId) row.classList.add("open");
      rows.set(summary.id, row);
      tbody.prepend(row);
      newest = Math.max(newest, summary.id);
    }
    while (rows.size > config.keep) { // bounded like the relay's memory of them
      const last = tbody.lastElementChild;
      rows.delete(Number(last.dataset.id));
      last.remove();
    }
    $("inspector-requests").hidden = rows.size === 0;
    $("inspector-empty").hidden = rows.size !== 0;
  }

  async function poll() {
    timer = null;
    if (document.hidden) return; // visibilitychange starts it again
    const answer = await call(config.api + "?after=" + newest, {}, config.deadline_ms);
    if (answer.status === 200 && answer.body && Array.isArray(answer.body.requests)) {
      add(answer.body.requests);
      backoff = config.poll_ms;
      say(rows.size ? "Live: new requests appear at the top." : "Live: waiting for requests…");
    } else if (answer.status === 404) {
      say("This tunnel is no longer live: its client stopped. What was kept is gone with it.");
      return; // nothing more will come
    } else if (answer.status === 401 || answer.status === 409) {
      // Signed out elsewhere, or the plan keeps nothing: polling again would not change it.
      say((answer.body && answer.body.message) || "The relay refused to list this tunnel's requests.");
      return;
    } else {
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      const why = (answer.body && answer.body.message) || "The relay answered " + answer.status + ".";
      say(why + " Trying again in " + Math.round(backoff / 1000) + " s.");
    }
    schedule(backoff);
  }

  function schedule(ms) {
    if (timer === null && !document.hidden) timer = setTimeout(poll, ms);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (timer !== null) { clearTimeout(timer); timer = null; }
    } else {
      schedule(0);
    }
  });

  // --- one exchange ------------------------------------------------------------------------
  function headersTable(headers) {
    const table = el("table", { class: "headers" });
    if (!headers || headers.length === 0) {
      table.append(el("tr", {}, el("td", { class: "none", text: "No headers" })));
      return table;
    }
    for (const [name, value] of headers) {
      const cell = el("td", { class: "value" });
      if (value === config.redacted) {
        cell.append(el("span", { class: "redacted", title: "Not kept: a credential", text: value }));
      } else {
        cell.textContent = value;
      }
      table.append(el("tr", {}, el("th", { scope: "row", title: name }, el("span", { class: "clip", text: name })), cell));
    }
    return table;
  }

  function hexDump(data) {
    const lines = [];
    for (let offset = 0; offset < data.length; offset += 16) {
      const chunk = data.subarray(offset, offset + 16);
      const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(offset.toString(16).padStart(8, "0") + "  " + hex.padEnd(47) + "  " + ascii);
    }
    return lines.join("\n");
  }

  function bodyViews(part) {
    const data = bytesOf(part.body_b64);
    const text = asText(data);
    const type = header(part.headers, "content-type").toLowerCase();
    const views = [];
    if (text !== null && text.trim() !== "") {
      let pretty = null;
      try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      if (pretty !== null) views.push(["JSON", () => el("pre", { text: pretty })]);
      if (type.startsWith("application/x-www-form-urlencoded")) {
        views.push(["Form", () => {
          const table = el("table", { class: "headers form" });
          for (const [key, value] of new URLSearchParams(text)) {
            table.append(el("tr", {}, el("th", { scope: "row", text: key }), el("td", { class: "value", text: value })));
          }
          return table;
        }]);
      }
      views.push(["Text", () => el("pre", { text })]);
    }
    if (data.length) views.push(["Hex", () => el("pre", { class: "hex", text: hexDump(data) })]);
    return { data, text, views };
  }

  function bodyBlock(part, total, label) {
    const { data, views } = bodyViews(part);
    const block = el("div", { class: "body" });
    if (!views.length) {
      block.append(el("p", { class: "none", text: "No body" }));
      return block;
    }
    const tabs = el("div", { class: "tabs", role: "tablist", "aria-label": label + " body as" });
    const shown = el("div", { class: "shown" });
    views.forEach(([name, render], index) => {
      const tab = el("button", { type: "button", role: "tab", class: "tab", "data-view": name.toLowerCase(), text: name });
      tab.addEventListener("click", () => {
        for (const other of tabs.children) other.setAttribute("aria-selected", "false");
        tab.setAttribute("aria-selected", "true");
        shown.replaceChildren(render());
      });
      tab.setAttribute("aria-selected", index === 0 ? "true" : "false");
      tabs.append(tab);
    });
    shown.replaceChildren(views[0][1]());
    block.append(tabs);
    if (part.body_truncated) {
      block.append(el("p", { class: "truncated", text: "First " + size(data.length) + " of " + size(total) + " kept." }));
    }
    block.append(shown);
    return block;
  }

  function renderExchange(node, detail, title) {
    const response = detail.response || { headers: [], body_b64: "", body_truncated: false, reason: "" };
    const status = el("span", { class: "badge " + statusClass(detail.status), text: statusText(detail) });
    const parts = [
      el("h3", {}, title + " ", status, " ", el("span", { class: "reason", text: response.reason || "" })),
      el("p", { class: "meta", text: detail.method + " " + detail.path + " · " + duration(detail.duration_ms) + " · from " + (detail.client_ip || "the owner") }),
      detail.error ? el("p", { class: "error", text: detail.error }) : null,
      el("h4", { text: "Request headers" }),
      headersTable(detail.request.headers),
      el("h4", { text: "Request body" }),
      bodyBlock(detail.request, detail.request_bytes, "Request"),
      el("h4", { text: "Response headers" }),
      headersTable(response.headers),
      el("h4", { text: "Response body" }),
      bodyBlock(response, detail.response_bytes, "Response"),
    ];
    node.replaceChildren(...parts.filter((part) => part !== null));
  }

  async function open(id) {
    for (const [rowId, row] of rows) row.classList.toggle("open", rowId === id);
    openId = id;
    const answer = await call(config.api + "/" + id, {}, config.deadline_ms);
    if (openId !== id) return; // another one was opened meanwhile
    $("inspector-detail").hidden = false;
    $("replay-form").hidden = true;
    $("replay-error").hidden = true;
    $("exchange-replay").hidden = true;
    $("exchanges").classList.remove("side-by-side");
    if (answer.status !== 200 || !answer.body) {
      openDetail = null;
      $("detail-title").textContent = "Request #" + id;
      $("exchange-original").replaceChildren(el("p", { class: "error", text: (answer.body && answer.body.message) || "This request is no longer kept." }));
      return;
    }
    openDetail = answer.body;
    $("detail-title").textContent = openDetail.method + " " + openDetail.path;
    $("detail-title").title = openDetail.method + " " + openDetail.path;
    renderExchange($("exchange-original"), openDetail, "Captured");
  }

  // --- replay ------------------------------------------------------------------------------
  function csrfToken() {
    return document.querySelector("#replay-form input[name=csrfmiddlewaretoken]").value;
  }

  function prefill(detail) {
    $("replay-method").value = detail.method;
    $("replay-path").value = detail.path;
    $("replay-headers").value = detail.request.headers.map(([name, value]) => name + ": " + value).join("\n");
    const body = $("replay-body");
    const text = asText(bytesOf(detail.request.body_b64));
    body.value = text === null ? "" : text;
    body.dataset.original = body.value;
    const hints = ["Headers shown as " + config.redacted + " are left out unless you type their value."];
    if (text === null) hints.push("The body is binary: it is sent as captured unless you type a new one.");
    if (detail.request.body_truncated) hints.push("The body was cut when it was kept: type a whole body to replay it.");
    $("replay-hint").textContent = hints.join(" ");
  }

  function edits() {
    const headers = [];
    for (const line of $("replay-headers").value.split("\n")) {
      if (!line.trim()) continue;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error("Each header line needs a name, a colon and a value: " + line.slice(0, 60));
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (value === config.redacted) continue; // not kept: left out, as the relay does
      headers.push([name, value]);
    }
    const out = { method: $("replay-method").value.trim().toUpperCase(), path: $("replay-path").value.trim(), headers };
    const body = $("replay-body");
    if (body.value !== body.dataset.original) out.body_b64 = b64Of(body.value);
    return out;
  }

  function replayError(status, message) {
    const box = $("replay-error");
    const lead = {
      0: "",
      400: "The relay cannot send this: ",
      404: "Nothing to replay: ",
      401: "You are signed out: sign in again, then replay. ",
      403: "The relay refused the replay: ",
      409: "This capture cannot be replayed: ",
      413: "The edits are too big: ",
      502: "The tunnel's client or your app failed: ",
      503: "The tunnel is busy: ",
      504: "Your app did not answer in time: ",
    }[status] ?? "The replay failed (" + status + "): ";
    box.textContent = lead + (message || "no reason given.");
    box.hidden = false;
  }

  async function replay(withEdits) {
    if (!openDetail) return;
    const id = openDetail.id;
    let body;
    try { body = withEdits ? edits() : {}; } catch (e) { replayError(400, e.message); return; }
    $("replay-error").hidden = true;
    for (const button of document.querySelectorAll("#replay-as-is, #replay-send")) button.disabled = true;
    say("Replaying request #" + id + "…");
    try {
      const answer = await call(
        config.api + "/" + id + "/replay",
        { method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() }, body: JSON.stringify(body) },
        config.replay_deadline_ms, // the relay's own deadline and a margin (tunnels/inspector.py)
      );
      if (answer.status !== 200 || !answer.body || !answer.body.request) {
        replayError(answer.status, answer.body && answer.body.message);
        say("The replay of #" + id + " failed.");
        return;
      }
      const node = $("exchange-replay");
      renderExchange(node, answer.body, "Replayed");
      node.hidden = false;
      $("exchanges").classList.add("side-by-side");
      $("replay-form").hidden = true;
      say("Replayed #" + id + " as #" + answer.body.id + ": it joins the list with the next poll.");
      node.scrollIntoView({ block: "nearest" });
    } finally {
      for (const button of document.querySelectorAll("#replay-as-is, #replay-send")) button.disabled = false;
    }
  }

  $("replay-as-is").addEventListener("click", () => replay(false));
  $("replay-edit").addEventListener("click", () => {
    if (!openDetail) return;
    prefill(openDetail);
    $("replay-form").hidden = false;
    $("replay-method").focus();
  });
  $("replay-cancel").addEventListener("click", () => { $("replay-form").hidden = true; });
  $("replay-form").addEventListener("submit", (event) => { event.preventDefault(); replay(true); });

  schedule(0);
})();
