// The miner's page: list the caller's docsets, request a dump, poll it honouring Retry-After, offer the archive.
// Everything shown is set as text (textContent) or as a checked attribute: docset names are user input.
"use strict";

(() => {
  const KEY_NAME = "tdm-api-key";
  const PER_PAGE = 100;
  const MAX_WAIT_SECONDS = 300; // a Retry-After beyond this is answered by a later click, not a long timer
  const timers = new Map(); // docset id -> pending poll timer

  const byId = (id) => document.getElementById(id);

  function element(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  const storedKey = () => sessionStorage.getItem(KEY_NAME);

  function showMessage(text) {
    const box = byId("message");
    box.textContent = text;
    box.hidden = !text;
  }

  // One API call. Redirects are never followed: a followed 303 would carry the key to the archive's host.
  async function api(method, path) {
    const response = await fetch(path, {
      method,
      headers: { "X-API-Key": storedKey() || "", Accept: "application/json" },
      redirect: "manual",
      cache: "no-store",
      credentials: "omit",
    });
    if (response.type === "opaqueredirect") return { status: 303, body: null, response };
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body, response };
  }

  const errorText = (answer) =>
    (answer.body && answer.body.error && answer.body.error.message) || `the server answered HTTP ${answer.status}`;

  // Seconds to wait as the server asks: Retry-After as seconds or an HTTP date, else the body's field, else 1.
  function retryAfterSeconds(answer) {
    const header = answer.response.headers.get("Retry-After");
    let seconds = NaN;
    if (header !== null) {
      seconds = /^\s*\d+\s*$/.test(header) ? Number(header) : (Date.parse(header) - Date.now()) / 1000;
    }
    if (!Number.isFinite(seconds) && answer.body && Number.isFinite(answer.body.retry_after_seconds)) {
      seconds = answer.body.retry_after_seconds;
    }
    if (!Number.isFinite(seconds)) seconds = 1;
    return Math.min(Math.max(seconds, 1), MAX_WAIT_SECONDS); // never a tight loop, even on "0"
  }

  // Only http(s) links are offered: a javascript: URL from a rogue packager must not become a link.
  function safeUrl(text) {
    try {
      const url = new URL(text, window.location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function formatBytes(size) {
    if (!Number.isFinite(size)) return "? bytes";
    if (size < 1024) return `${size} bytes`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let value = size;
    let unit = -1;
    do {
      value /= 1024;
      unit += 1;
    } while (value >= 1024 && unit < units.length - 1);
    return `${value.toFixed(1)} ${units[unit]} (${size} bytes)`;
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_NAME);
    for (const timer of timers.values()) clearTimeout(timer);
    timers.clear();
    byId("docsets").tBodies[0].replaceChildren();
    byId("docsets-section").hidden = true;
    byId("key-status").hidden = true;
  }

  async function loadDocsets() {
    showMessage("");
    const docsets = [];
    for (let page = 1; ; page += 1) {
      let answer;
      try {
        answer = await api("GET", `/api/docsets?page=${page}&per_page=${PER_PAGE}`);
      } catch (error) {
        showMessage(`The server cannot be reached: ${error.message}`);
        return;
      }
      if (answer.status === 401) {
        forgetKey();
        showMessage(`That key was refused: ${errorText(answer)}`);
        return;
      }
      if (answer.status !== 200 || !answer.body) {
        showMessage(`Listing your docsets failed: ${errorText(answer)}`);
        return;
      }
      docsets.push(...answer.body.docsets);
      if (page * PER_PAGE >= answer.body.total || answer.body.docsets.length === 0) break;
    }
    byId("key-status").hidden = false;
    renderDocsets(docsets);
  }

  function renderDocsets(docsets) {
    for (const timer of timers.values()) clearTimeout(timer);
    timers.clear();
    const rows = docsets.map((docset) => {
      const button = element("button", { type: "button", className: "request-dump" }, "Request dump");
      const bar = element("progress", { max: 100, value: 0 });
      bar.hidden = true;
      const cell = element(
        "div",
        { className: "dump", dataset: { docsetId: String(docset.id), state: "idle" } },
        button,
        bar,
        element("span", { className: "dump-text" }),
        element("span", { className: "dump-result" }),
      );
      button.addEventListener("click", () => requestDump(docset.id, cell));
      return element(
        "tr",
        { dataset: { docsetId: String(docset.id) } },
        element("td", {}, String(docset.id)),
        element("td", { className: "name" }, docset.name),
        element("td", {}, String(docset.member_count)),
        element("td", {}, cell),
      );
    });
    byId("docsets").tBodies[0].replaceChildren(...rows);
    byId("docsets-empty").hidden = docsets.length > 0;
    byId("docsets").hidden = docsets.length === 0;
    byId("docsets-section").hidden = false;
  }

  function setState(cell, state, text) {
    cell.dataset.state = state;
    cell.querySelector(".dump-text").textContent = text;
  }

  function describePending(body) {
    const percent = Number.isFinite(body.percent) ? body.percent : 0;
    const parts = [`${body.state.replace("_", " ")}: ${percent.toFixed(0)} %`];
    if (Number.isFinite(body.items_done) && Number.isFinite(body.items_total)) {
      parts.push(`${body.items_done} of ${body.items_total} documents`);
    }
    if (Number.isFinite(body.eta_seconds)) parts.push(`about ${Math.ceil(body.eta_seconds)} s left`);
    return parts.join(", ");
  }

  function schedulePoll(docsetId, cell, seconds) {
    clearTimeout(timers.get(docsetId));
    timers.set(
      docsetId,
      setTimeout(() => dumpCall(docsetId, cell, "GET"), seconds * 1000),
    );
  }

  function requestDump(docsetId, cell) {
    clearTimeout(timers.get(docsetId));
    cell.querySelector(".dump-result").replaceChildren();
    dumpCall(docsetId, cell, "POST");
  }

  // POST asks for a fresh package; GET polls it. ?redirect=false: complete is a 200 whose body we can read.
  async function dumpCall(docsetId, cell, method) {
    timers.delete(docsetId);
    const button = cell.querySelector(".request-dump");
    const bar = cell.querySelector("progress");
    button.disabled = true;
    let answer;
    try {
      answer = await api(method, `/api/docsets/${encodeURIComponent(docsetId)}/dump?redirect=false`);
    } catch (error) {
      setState(cell, "error", `The server cannot be reached (${error.message}); retrying in 5 s`);
      schedulePoll(docsetId, cell, 5);
      return;
    }
    const body = answer.body || {};
    const code = body.error && body.error.code;
    if (answer.status === 202) {
      bar.hidden = false;
      bar.value = Number.isFinite(body.percent) ? body.percent : 0;
      setState(cell, body.state || "requested", describePending(body));
      schedulePoll(docsetId, cell, retryAfterSeconds(answer));
    } else if (answer.status === 200 && body.state === "complete") {
      showComplete(cell, body);
    } else if (answer.status === 401) {
      forgetKey();
      showMessage(`Your key was refused: ${errorText(answer)}`);
    } else if (answer.status === 429 && code === "dump_in_progress") {
      setState(cell, "requested", `${errorText(answer)}; following the build already running`);
      schedulePoll(docsetId, cell, retryAfterSeconds(answer));
    } else if (answer.status === 503) {
      const seconds = retryAfterSeconds(answer);
      setState(cell, "waiting", `${errorText(answer)} (trying again in ${Math.ceil(seconds)} s)`);
      schedulePoll(docsetId, cell, seconds);
    } else {
      // 410 (deleted or expired), 502 (packaging failed), 429 (over a quota), anything else.
      bar.hidden = true;
      const state = body.state === "failed" || body.state === "deleted" ? body.state : "error";
      setState(cell, state, errorText(answer));
      button.textContent = "Request again";
      button.disabled = false;
    }
  }

  function showComplete(cell, body) {
    const bar = cell.querySelector("progress");
    bar.hidden = false;
    bar.value = 100;
    const button = cell.querySelector(".request-dump");
    button.textContent = "Request a fresh dump";
    button.disabled = false;
    const href = safeUrl(body.archive_url);
    const result = cell.querySelector(".dump-result");
    if (href === null) {
      setState(cell, "error", "The archive is ready but its URL is not an http(s) link; ask the operators");
      result.replaceChildren();
      return;
    }
    setState(cell, "complete", `Complete: ${formatBytes(body.size_bytes)}`);
    const link = element("a", { className: "download", href, download: "", rel: "noopener noreferrer" }, "Download archive");
    const details = [link];
    if (body.sha256) details.push(element("span", { className: "sha256" }, `sha256 ${body.sha256}`));
    if (body.url_expires_at) details.push(element("span", { className: "hint" }, `link valid until ${body.url_expires_at}`));
    result.replaceChildren(...details.flatMap((node) => [node, " "]));
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("api-key");
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_NAME, key);
      input.value = "";
      loadDocsets();
    });
    byId("forget-key").addEventListener("click", () => {
      forgetKey();
      showMessage("");
    });
    if (storedKey()) loadDocsets();
  });
})();
