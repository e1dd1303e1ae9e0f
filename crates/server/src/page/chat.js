// hearth's chat page: picks a model from /v1/models, streams /v1/chat/completions (SSE) into the page with its own
// small Markdown renderer, keeps conversations in localStorage, and asks for the API key when the server wants one.
// No framework, no build step; the Content-Security-Policy allows only this file's code.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    sidebar: $("sidebar"), scrim: $("scrim"), openSide: $("open-side"), closeSide: $("close-side"),
    newChat: $("new-chat"), chats: $("chats"), system: $("system"), temperature: $("temperature"),
    temperatureValue: $("temperature-value"), keyButton: $("key-button"), model: $("model"), status: $("status"),
    log: $("log"), empty: $("empty"), composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
    keyDialog: $("key-dialog"), keyForm: $("key-form"), keyInput: $("key-input"), keyError: $("key-error"),
    keyForget: $("key-forget"), newChatTop: $("new-chat-top"),
  };
  const KEY_REQUIRED = document.querySelector('meta[name="hearth-api-key"]').content === "required";

  // ---- Storage: everything under "hearth.*"; anything unreadable is treated as absent, never trusted. ----

  const store = {
    get(name, fallback) {
      try {
        const v = JSON.parse(localStorage.getItem("hearth." + name));
        return v === null || v === undefined ? fallback : v;
      } catch (_) {
        return fallback;
      }
    },
    set(name, value) {
      try {
        localStorage.setItem("hearth." + name, JSON.stringify(value));
      } catch (e) {
        setStatus("Could not save in this browser: " + e.message, true);
      }
    },
  };

  const isStr = (v) => typeof v === "string";
  const num = (v) => (Number.isFinite(v) ? v : null);
  const validMessage = (m) => m && (m.role === "user" || m.role === "assistant") && isStr(m.content);
  const validChat = (c) => c && isStr(c.id) && isStr(c.title) && Array.isArray(c.messages) &&
    c.messages.every(validMessage);

  const loaded = store.get("chats", []);
  let chats = Array.isArray(loaded) ? loaded.filter(validChat) : [];
  const savedSettings = store.get("settings", {});
  const settings = {
    model: isStr(savedSettings.model) ? savedSettings.model : "",
    system: isStr(savedSettings.system) ? savedSettings.system : "",
    temperature: Number.isFinite(savedSettings.temperature) ? Math.min(2, Math.max(0, savedSettings.temperature)) : 0.7,
  };
  let apiKey = isStr(store.get("apiKey", "")) ? store.get("apiKey", "") : "";
  let currentId = store.get("current", "");
  /** The answer being streamed: its message object, the chat it belongs to, its element and abort controller. */
  let live = null;

  const saveChats = () => {
    store.set("chats", chats);
    store.set("current", currentId);
  };
  const saveSettings = () => store.set("settings", settings);
  const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const current = () => chats.find((c) => c.id === currentId);

  function setStatus(text, error) {
    el.status.textContent = text;
    el.status.classList.toggle("error", !!error);
  }

  // ---- Markdown: the source is HTML-escaped first, so everything below works on inert text. ----

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ESC[c]);
  const LIST = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^\s{0,3}&gt;\s?/;
  const blank = (l) => /^\s*$/.test(l);
  const indentOf = (l) => l.match(/^\s*/)[0].length;
  const startsBlock = (l) => FENCE.test(l) || HEADING.test(l) || RULE.test(l) || QUOTE.test(l) || LIST.test(l);

  /** Only absolute http(s) and mailto links are made clickable. `url` is escaped text: it holds no quote. */
  const safeUrl = (url) => /^(https?:\/\/|mailto:)/i.test(url);

  function markdown(src) {
    return blocks(escapeHtml(src.replace(/\0/g, "")).split("\n"));
  }

  function blocks(lines) {
    const out = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if ((m = line.match(FENCE))) {
        const fence = m[1];
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
        i++;
        const lang = m[2] ? `<span class="lang">${m[2]}</span>` : "";
        out.push(`<pre>${lang}<code>${code.join("\n")}</code></pre>`);
      } else if (blank(line)) {
        i++;
      } else if ((m = line.match(HEADING))) {
        const n = m[1].length;
        out.push(`<h${n}>${inline(m[2])}</h${n}>`);
        i++;
      } else if (RULE.test(line)) {
        out.push("<hr>");
        i++;
      } else if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && QUOTE.test(lines[i])) inner.push(lines[i++].replace(QUOTE, ""));
        out.push(`<blockquote>${blocks(inner)}</blockquote>`);
      } else if (LIST.test(line)) {
        i = list(lines, i, out);
      } else {
        const para = [];
        while (i < lines.length && !blank(lines[i]) && !(para.length && startsBlock(lines[i]))) {
          para.push(lines[i++].trim());
        }
        out.push(`<p>${para.map(inline).join("<br>")}</p>`);
      }
    }
    return out.join("");
  }

  /** A list starting at `lines[i]`: items at its indentation, deeper lines nested inside them. Returns the next i. */
  function list(lines, i, out) {
    const first = lines[i].match(LIST);
    const indent = first[1].length;
    const ordered = /\d/.test(first[2]);
    const items = [];
    while (i < lines.length) {
      const line = lines[i];
      const m = line.match(LIST);
      if (m && m[1].length <= indent + 1 && /\d/.test(m[2]) === ordered) {
        items.push([m[3]]);
        i++;
      } else if (blank(line)) {
        let j = i + 1;
        while (j < lines.length && blank(lines[j])) j++;
        if (j < lines.length && (indentOf(lines[j]) > indent || (LIST.test(lines[j]) && indentOf(lines[j]) === indent))) {
          i = j;
        } else {
          break;
        }
      } else if (indentOf(line) > indent || !startsBlock(line)) {
        items[items.length - 1].push(line);
        i++;
      } else {
        break;
      }
    }
    const tag = ordered ? "ol" : "ul";
    const n = parseInt(first[2], 10);
    const start = ordered && n !== 1 ? ` start="${n}"` : "";
    const lis = items.map(([head, ...rest]) => {
      const text = [head];
      while (rest.length && !startsBlock(rest[0])) text.push(rest.shift().trim());
      const cut = Math.min(...rest.filter((l) => !blank(l)).map(indentOf));
      const nested = rest.length ? blocks(rest.map((l) => l.slice(Math.min(cut, indentOf(l))))) : "";
      return `<li>${text.map(inline).join("<br>")}${nested}</li>`;
    });
    out.push(`<${tag}${start}>${lis.join("")}</${tag}>`);
    return i;
  }

  /** Inline code, links and emphasis on one escaped line. Code and links are set aside first, so emphasis never
   * reaches inside them (or inside an href). */
  function inline(s) {
    const kept = [];
    const keep = (html) => `\0${kept.push(html) - 1}\0`;
    s = s.replace(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g, (_, tick, code) => keep(`<code>${code}</code>`));
    s = s.replace(/\[([^\]\n]+)\]\(\s*([^\s)]+)\s*\)/g, (all, label, url) =>
      safeUrl(url) ? keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`) : all);
    s = s.replace(/\bhttps?:\/\/(?:(?!&quot;|&#39;|&lt;|&gt;)[^\s\0])+/g, (url) => {
      const tail = url.match(/(?:[.,;:!?)\]]|&amp;)*$/)[0];
      const bare = url.slice(0, url.length - tail.length);
      return keep(`<a href="${bare}" target="_blank" rel="noopener noreferrer">${bare}</a>`) + tail;
    });
    s = emphasis(s);
    return s.replace(/\0(\d+)\0/g, (_, k) => kept[+k]);
  }

  function emphasis(s) {
    return s
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/(^|[^\w*])\*(?=[^\s*])([^*]*?[^\s*])\*(?![\w*])/g, "$1<em>$2</em>")
      .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  }

  // ---- Conversations: list and log ----

  function renderChats() {
    el.chats.replaceChildren(...chats.map((c) => {
      const li = document.createElement("li");
      li.classList.toggle("current", c.id === currentId);
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open-chat";
      open.textContent = c.title || "New chat";
      open.title = c.title;
      open.addEventListener("click", () => {
        currentId = c.id;
        saveChats();
        renderAll();
        closeSidebar();
      });
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete-chat";
      del.setAttribute("aria-label", "Delete " + (c.title || "chat"));
      del.textContent = "×";
      del.addEventListener("click", () => deleteChat(c.id));
      li.append(open, del);
      return li;
    }));
  }

  function renderLog() {
    const chat = current();
    const nodes = chat ? chat.messages.map(messageNode) : [];
    el.empty.hidden = nodes.length > 0;
    el.log.replaceChildren(el.empty, ...nodes);
    el.log.scrollTop = el.log.scrollHeight;
  }

  function renderAll() {
    renderChats();
    renderLog();
  }

  function messageNode(m) {
    const node = document.createElement("div");
    node.className = "msg " + m.role;
    if (m.role === "user") {
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = m.content;
      node.append(bubble);
      return node;
    }
    const thoughts = document.createElement("details");
    thoughts.className = "reasoning";
    thoughts.innerHTML = '<summary>Reasoning</summary><div class="thoughts"></div>';
    const body = document.createElement("div");
    body.className = "body";
    const meta = document.createElement("div");
    meta.className = "meta";
    node.append(thoughts, body, meta);
    if (live && live.answer === m) {
      live.node = node;
      node.classList.add("streaming");
    }
    fillAnswer(node, m);
    return node;
  }

  /** (Re)draws an answer: its reasoning (plain text), its Markdown body, and its numbers. */
  function fillAnswer(node, m) {
    const [thoughts, body, meta] = node.children;
    const reasoning = isStr(m.reasoning) ? m.reasoning : "";
    thoughts.hidden = !reasoning;
    thoughts.querySelector(".thoughts").textContent = reasoning;
    const thinking = live && live.answer === m && !m.content;
    thoughts.querySelector("summary").textContent = thinking && !m.stats ? "Thinking…" : "Reasoning";
    if (thinking && reasoning && !live.shownThoughts) {
      thoughts.open = true; // open while the model is thinking; the user decides after that
      live.shownThoughts = true;
    }
    body.innerHTML = markdown(m.content);
    if (navigator.clipboard) {
      // (Only in a secure context: https, localhost or a loopback address.)
      for (const pre of body.querySelectorAll("pre")) {
        const copy = document.createElement("button");
        copy.type = "button";
        copy.className = "copy";
        copy.textContent = "Copy";
        pre.prepend(copy);
      }
    }
    if (isStr(m.error)) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = m.error;
      body.append(p);
    }
    meta.replaceChildren();
    const s = m.stats;
    if (!s || typeof s !== "object") return;
    const parts = [];
    if (isStr(m.model)) parts.push(m.model);
    if (num(s.tokens)) parts.push(`${s.tokens}\u00a0tokens`);
    if (num(s.tps)) parts.push(`${s.tps.toFixed(1)}\u00a0tok/s`);
    if (num(s.ttft) !== null) parts.push(`first\u00a0token\u00a0${s.ttft.toFixed(2)}\u00a0s`);
    meta.textContent = parts.join(" · ");
    if (m.stopped || s.finish === "length") {
      const flag = document.createElement("span");
      flag.className = "stopped";
      flag.textContent = m.stopped ? " · stopped" : " · cut at the length limit";
      meta.append(flag);
    }
  }

  function newChat() {
    const chat = current();
    if (!chat || chat.messages.length) {
      chats.unshift({ id: newId(), title: "", created: Date.now(), messages: [] });
      currentId = chats[0].id;
    }
    saveChats();
    renderAll();
    closeSidebar();
    el.prompt.focus();
  }

  function deleteChat(id) {
    if (live && live.chat.id === id) live.ctrl.abort();
    chats = chats.filter((c) => c.id !== id);
    if (currentId === id) currentId = chats.length ? chats[0].id : "";
    saveChats();
    renderAll();
  }

  // ---- The API ----

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  async function errorText(res) {
    try {
      const v = await res.json();
      if (v && v.error && isStr(v.error.message)) return v.error.message;
    } catch (_) { /* not JSON */ }
    return `${res.status} ${res.statusText}`;
  }

  async function loadModels() {
    setStatus("Loading models…");
    let res;
    try {
      res = await fetch("/v1/models", { headers: headers(false) });
    } catch (e) {
      setStatus("The server cannot be reached", true);
      return;
    }
    if (res.status === 401) {
      askKey("The server did not accept this key.");
      return;
    }
    if (!res.ok) {
      setStatus(await errorText(res), true);
      return;
    }
    const v = await res.json();
    const ids = (Array.isArray(v.data) ? v.data : []).map((m) => m && m.id).filter(isStr);
    el.model.replaceChildren(...ids.map((id) => new Option(id, id)));
    if (!ids.includes(settings.model)) settings.model = ids[0] || "";
    el.model.value = settings.model;
    saveSettings();
    setStatus(ids.length ? "" : "The server lists no models", !ids.length);
    updateButtons();
  }

  function askKey(error) {
    el.keyError.textContent = error || "";
    el.keyError.hidden = !error;
    el.keyInput.value = apiKey;
    if (!el.keyDialog.open) el.keyDialog.showModal();
    el.keyInput.focus();
    setStatus("An API key is needed", true);
  }

  /** Reads an SSE body, calling `onData` with each parsed `data:` payload until `[DONE]`. */
  async function readEvents(body, onData) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        if (!line.startsWith("data:")) continue; // blank separators and ": keep-alive" comments
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const v = JSON.parse(data);
        if (v.error) throw new Error(isStr(v.error.message) ? v.error.message : "The server failed");
        onData(v);
      }
    }
  }

  async function send() {
    const text = el.prompt.value.trim();
    if (!text || live) return;
    if (!settings.model) {
      setStatus("No model to ask", true);
      return;
    }
    let chat = current();
    if (!chat) {
      chat = { id: newId(), title: "", created: Date.now(), messages: [] };
      chats.unshift(chat);
      currentId = chat.id;
    }
    if (!chat.title) chat.title = text.replace(/\s+/g, " ").slice(0, 60);
    const history = chat.messages.filter((m) => !(m.role === "assistant" && !m.content));
    const messages = history.map((m) => ({ role: m.role, content: m.content }));
    messages.push({ role: "user", content: text });
    if (settings.system.trim()) messages.unshift({ role: "system", content: settings.system });
    const answer = { role: "assistant", content: "", reasoning: "", model: settings.model };
    chat.messages.push({ role: "user", content: text }, answer);
    el.prompt.value = "";
    growPrompt();
    live = { answer, chat, node: null, ctrl: new AbortController(), shownThoughts: false };
    saveChats();
    renderAll();
    updateButtons();

    const t0 = performance.now();
    let first = null;
    let last = null;
    let pieces = 0;
    let usage = null;
    let finish = null;
    let drawn = false;
    const draw = () => {
      drawn = false;
      if (live && live.node && live.node.isConnected) {
        const log = el.log;
        const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
        fillAnswer(live.node, answer);
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
    };
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers(true),
        signal: live.ctrl.signal,
        body: JSON.stringify({
          model: settings.model,
          messages,
          stream: true,
          stream_options: { include_usage: true },
          temperature: settings.temperature,
        }),
      });
      if (!res.ok) {
        if (res.status === 401) askKey("The server did not accept this key.");
        throw new Error(await errorText(res));
      }
      await readEvents(res.body, (v) => {
        if (v.usage) usage = v.usage;
        const choice = Array.isArray(v.choices) ? v.choices[0] : null;
        if (!choice) return;
        const d = choice.delta || {};
        const r = isStr(d.reasoning_content) ? d.reasoning_content : "";
        const c = isStr(d.content) ? d.content : "";
        if (r || c) {
          const now = performance.now();
          if (first === null) first = now;
          last = now;
          pieces++;
          answer.reasoning += r;
          answer.content += c;
          if (!drawn) {
            drawn = true;
            requestAnimationFrame(draw);
          }
        }
        if (choice.finish_reason) {
          finish = choice.finish_reason;
          last = performance.now();
        }
      });
    } catch (e) {
      if (e.name === "AbortError") answer.stopped = true;
      else answer.error = e.message || String(e);
    }
    // Tokens per second after the first one, as the server's metric counts them; the piece count stands in for
    // the token count when the answer was stopped before the usage arrived. Under 0.1 s the chunks arrive in a
    // few network reads, and their spacing says nothing about the speed: no rate then.
    const tokens = usage && Number.isFinite(usage.completion_tokens) ? usage.completion_tokens : pieces;
    const span = first === null ? 0 : (last - first) / 1000;
    answer.stats = {
      tokens,
      ttft: first === null ? null : (first - t0) / 1000,
      tps: span >= 0.1 && tokens > 1 ? (tokens - 1) / span : null,
      finish,
    };
    if (live.node) {
      live.node.classList.remove("streaming");
      fillAnswer(live.node, answer);
    }
    live = null;
    saveChats();
    updateButtons();
  }

  // ---- Controls ----

  function updateButtons() {
    el.send.hidden = !!live;
    el.stop.hidden = !live;
    el.send.disabled = !settings.model;
  }

  function growPrompt() {
    el.prompt.style.height = "auto";
    el.prompt.style.height = Math.min(el.prompt.scrollHeight + 2, window.innerHeight * 0.4) + "px";
  }

  function openSidebar() {
    el.sidebar.classList.add("open");
    el.scrim.hidden = false;
  }

  function closeSidebar() {
    el.sidebar.classList.remove("open");
    el.scrim.hidden = true;
  }

  el.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  el.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  el.prompt.addEventListener("input", growPrompt);
  el.log.addEventListener("click", (e) => {
    const copy = e.target.closest("button.copy");
    if (!copy) return;
    const code = copy.parentElement.querySelector("code");
    navigator.clipboard.writeText(code ? code.textContent : "").then(
      () => { copy.textContent = "Copied"; },
      () => { copy.textContent = "Not allowed"; },
    );
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });
  el.stop.addEventListener("click", () => live && live.ctrl.abort());
  el.newChat.addEventListener("click", newChat);
  el.newChatTop.addEventListener("click", newChat);
  el.openSide.addEventListener("click", openSidebar);
  el.closeSide.addEventListener("click", closeSidebar);
  el.scrim.addEventListener("click", closeSidebar);
  el.model.addEventListener("change", () => {
    settings.model = el.model.value;
    saveSettings();
  });
  el.system.addEventListener("input", () => {
    settings.system = el.system.value;
    saveSettings();
  });
  el.temperature.addEventListener("input", () => {
    settings.temperature = Number(el.temperature.value);
    el.temperatureValue.textContent = settings.temperature.toFixed(2);
    saveSettings();
  });
  el.keyButton.addEventListener("click", () => askKey(""));
  el.keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey = el.keyInput.value.trim();
    store.set("apiKey", apiKey);
    el.keyDialog.close();
    loadModels();
  });
  el.keyForget.addEventListener("click", () => {
    apiKey = "";
    el.keyInput.value = "";
    localStorage.removeItem("hearth.apiKey");
  });
  window.addEventListener("storage", (e) => {
    if (e.key === "hearth.chats" && !live) {
      const v = store.get("chats", []);
      chats = Array.isArray(v) ? v.filter(validChat) : [];
      renderAll();
    }
  });

  el.system.value = settings.system;
  el.temperature.value = String(settings.temperature);
  el.temperatureValue.textContent = settings.temperature.toFixed(2);
  el.keyButton.hidden = !KEY_REQUIRED;
  if (!current()) currentId = chats.length ? chats[0].id : "";
  renderAll();
  updateButtons();
  if (KEY_REQUIRED && !apiKey) askKey("");
  else loadModels();

  // For the page's tests (and curious users): the renderer, callable from the console.
  window.hearthMarkdown = markdown;
})();
