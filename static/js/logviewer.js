/* The live log viewer of a run (templates/runs/_log_viewer.html).
 *
 * Each stream (driver stdout/stderr, a node's log) is followed by byte offset
 * over the run's websocket; a chunk is written only for the bytes past what the
 * viewer already has, so a reconnect neither loses nor repeats output. Bytes
 * are decoded per stream with a streaming TextDecoder, so a UTF-8 character
 * split across chunks comes out whole. A finished run's log loads tail first.
 *
 * The terminal shows a window over the log: per stream, the bytes from `start`
 * to `offset`. The terminal forgets lines past its scrollback, so the window is
 * kept within it: following the end moves the window's start on; "Load earlier
 * output" moves the window back a page (through the HTTP logs API), dropping
 * its newest part; "Load later output" pages forward again and "Jump to the
 * end" starts over at the tail.
 *
 * The socket's status frames are the page's word on the run's status: when one
 * differs from what the viewer had, it fires `run-status` (bubbling, with
 * `detail` {run, status, final}), on which the run page reloads its status part.
 */
(function () {
  "use strict";

  const STDERR_ON = "\x1b[38;5;209m";
  const STDERR_OFF = "\x1b[39m";
  const PAGE_BYTES = 1024 * 1024;
  const SCROLLBACK_ROWS = 100000;
  // Wider than what prints without a terminal: tqdm's bars, 80-column tools. A narrower
  // page scrolls the terminal sideways.
  const MIN_COLUMNS = 120;
  // Below the scrollback: a window counted at one width still fits once the reader
  // narrows the terminal a little and its lines wrap more.
  const WINDOW_ROWS = 80000;
  // Lines per piece of the window, so that it is trimmed in small steps.
  const PIECE_LINES = 2000;
  const RETRY_MIN_MS = 250;
  const RETRY_MAX_MS = 5000;
  const NOT_ALLOWED = 4403;

  // "stdout"/"stderr" are the driver's; "<source>.stdout"/"<source>.stderr" a
  // node's pair; any other name is a log of its own.
  function sourceOf(stream) {
    const match = /^(?:(.+)\.)?(stdout|stderr)$/.exec(stream);
    return match ? match[1] || "" : stream;
  }

  const SOURCE_LABELS = { "": "Driver", prepare: "Preparation (snapshot, environment)" };

  // A multi-node run's rank N writes "node-N.stdout", "node-N.stderr" and "node-N.prepare".
  function sourceLabel(source) {
    const node = /^node-(\d+)(\.prepare)?$/.exec(source);
    if (node) return node[2] ? `Node ${node[1]}: preparation` : `Node ${node[1]}`;
    return SOURCE_LABELS[source] || source;
  }

  function isStderr(stream) {
    return /(^|\.)stderr$/.test(stream);
  }

  // How many bytes at the end of `bytes` begin a UTF-8 character that is not complete yet.
  function incompleteUtf8(bytes) {
    for (let back = 1; back <= Math.min(3, bytes.length); back++) {
      const byte = bytes[bytes.length - back];
      if ((byte & 0xc0) === 0x80) continue;
      const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
      return length > back ? back : 0;
    }
    return 0;
  }

  function joined(first, second) {
    if (!first.length) return second;
    const both = new Uint8Array(first.length + second.length);
    both.set(first);
    both.set(second, first.length);
    return both;
  }

  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8");

  function fromBase64(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  // An escape sequence cut at the end of a chunk is held back until its rest
  // arrives, so colouring stderr never lands inside the program's own sequence.
  function splitIncompleteEscape(text) {
    const at = text.lastIndexOf("\x1b");
    if (at < 0 || text.length - at > 64) return [text, ""];
    const rest = text.slice(at);
    const complete =
      /^\x1b\[[0-?]*[ -/]*[@-~]/.test(rest) ||
      /^\x1b\][^\x07\x1b]*(\x07|\x1b\\)/.test(rest) ||
      /^\x1b[^[\]]/.test(rest);
    return complete ? [text, ""] : [text.slice(0, at), rest];
  }

  // What moves the cursor along a line: escape sequences (which do not), returns, newlines, text.
  const TERMINAL_PARTS = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.|\r|\n|[^\x1b\r\n]+/g;

  // `text`, which starts at byte `start` of `stream`, in pieces of at most PIECE_LINES lines.
  function pieces(stream, text, start) {
    const result = [];
    let from = 0;
    while (from < text.length) {
      let to = from;
      for (let n = 0; n < PIECE_LINES && to < text.length; n++) {
        const newline = text.indexOf("\n", to);
        to = newline < 0 ? text.length : newline + 1;
      }
      const piece = text.slice(from, to);
      const end = start + encoder.encode(piece).length;
      result.push({ stream: stream, text: piece, start: start, end: end, rows: 0 });
      start = end;
      from = to;
    }
    return result;
  }

  // Only web links open. A run's output decides where an OSC 8 hyperlink points: a
  // javascript:, data: or file: link would run or show whatever the run chose, in the
  // studio's origin or from the reader's disk.
  const LINK_PROTOCOLS = ["http:", "https:"];

  function webLink(uri) {
    try {
      return LINK_PROTOCOLS.includes(new URL(uri).protocol);
    } catch {
      return false;
    }
  }

  const linkHandler = {
    allowNonHttpProtocols: false,
    activate(event, uri) {
      // The text shown need not be the address: the reader sees where it goes first.
      if (!webLink(uri) || !window.confirm(`Open ${uri} in a new tab?`)) return;
      window.open(uri, "_blank", "noopener,noreferrer");
    },
  };

  class LogViewer {
    constructor(root) {
      this.root = root;
      this.config = JSON.parse(document.getElementById(root.dataset.config).textContent);
      this.part = (name) => root.querySelector(`[data-role="${name}"]`);
      this.sizes = Object.assign({}, this.config.streams);
      this.final = this.config.final;
      this.status = this.config.status;
      this.socket = null;
      this.synced = false;
      this.retryMs = RETRY_MIN_MS;
      this.denied = false;

      this.term = new Terminal({
        convertEol: true,
        disableStdin: true,
        scrollback: SCROLLBACK_ROWS,
        fontSize: 13,
        fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, monospace',
        theme: { background: "#0f1419", foreground: "#e6e6e6" },
        linkHandler,
      });
      this.fit = new FitAddon.FitAddon();
      this.search = new SearchAddon.SearchAddon();
      this.term.loadAddon(this.fit);
      this.term.loadAddon(this.search);
      this.term.open(this.part("terminal"));
      this.fitTerminal();
      new ResizeObserver(() => this.fitTerminal()).observe(this.part("terminal"));
      this.term.onScroll(() => this.showFollow());
      this.term.onWriteParsed(() => this.showFollow());

      this.bindControls();
      this.fillSources();
      this.select("");
    }

    // As tall as the page gives it, and never narrower than MIN_COLUMNS: a progress bar
    // that wrapped would not redraw in place, since a carriage return goes back to the
    // start of a row, not of a line.
    fitTerminal() {
      const size = this.fit.proposeDimensions();
      if (!size || !size.cols || !size.rows) return;
      this.term.resize(Math.max(size.cols, MIN_COLUMNS), size.rows);
    }

    bindControls() {
      this.part("source").addEventListener("change", (e) => this.select(e.target.value));
      this.part("follow").addEventListener("click", () => {
        this.term.scrollToBottom();
        this.showFollow();
      });
      this.part("earlier").addEventListener("click", () => this.loadEarlier());
      this.part("later").addEventListener("click", () => this.loadLater());
      this.part("end").addEventListener("click", () => this.select(this.source));
      const form = this.part("search");
      const find = (backwards) => {
        const query = form.querySelector("input").value;
        if (!query) return;
        const found = backwards
          ? this.search.findPrevious(query)
          : this.search.findNext(query);
        this.part("search-result").textContent = found ? "" : "Not found";
      };
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        find(false);
      });
      this.part("search-previous").addEventListener("click", () => find(true));
    }

    sources() {
      const found = new Set(Object.keys(this.sizes).map(sourceOf));
      found.add("");
      return Array.from(found).sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1));
    }

    streamsOf(source) {
      if (source === "") return ["stdout", "stderr"];
      const pair = [source + ".stdout", source + ".stderr"];
      const names = pair.some((stream) => stream in this.sizes) ? pair : [];
      return source in this.sizes ? [source].concat(names) : names;
    }

    fillSources() {
      const select = this.part("source");
      const current = select.value;
      select.replaceChildren(
        ...this.sources().map((source) => new Option(sourceLabel(source), source)),
      );
      select.value = this.source !== undefined ? this.source : current;
    }

    // Start a source afresh: its tail, then whatever follows.
    select(source) {
      this.source = source;
      this.part("source").value = source;
      this.streams = {};
      for (const stream of this.streamsOf(source)) {
        const size = this.sizes[stream] || 0;
        const start = Math.max(0, size - this.config.tailBytes);
        this.streams[stream] = {
          start: start,
          offset: start,
          skipToLine: start > 0,
          // Bytes of a UTF-8 character and text of an escape sequence cut by a chunk's end.
          carry: new Uint8Array(0),
          hold: "",
        };
      }
      // What the terminal shows, oldest first: pieces {stream, text, start, end, rows}.
      this.window = [];
      this.windowRows = 0;
      this.atEnd = true;
      this.paging = false;
      this.clear();
      this.showDownloads();
      this.showPaging();
      this.follow();
    }

    // At the end of the log the server sends what follows; away from it, nothing.
    follow() {
      this.synced = false;
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        const offsets = {};
        if (this.atEnd) {
          for (const [stream, state] of Object.entries(this.streams)) offsets[stream] = state.offset;
        }
        this.socket.send(JSON.stringify({ type: "follow", offsets: offsets }));
      } else if (!this.socket && !this.denied && this.atEnd) {
        this.connect();
      }
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(scheme + "//" + location.host + this.config.socket);
      this.socket = socket;
      this.setState(this.final ? "Loading…" : "Connecting…");
      socket.onopen = () => {
        this.retryMs = RETRY_MIN_MS;
        this.follow();
      };
      socket.onmessage = (event) => this.receive(JSON.parse(event.data));
      socket.onclose = (event) => {
        if (this.socket === socket) this.socket = null;
        if (event.code === NOT_ALLOWED) {
          this.denied = true;
          this.setState("You cannot see this run's logs: you are not a member of its workspace.");
          return;
        }
        if (this.final && this.synced) return;
        this.setState("Connection lost; reconnecting…");
        setTimeout(() => {
          if (!this.socket) this.connect();
        }, this.retryMs);
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
      };
    }

    receive(message) {
      if (message.type === "log") this.append(message);
      else if (message.type === "stream") this.discovered(message.stream, message.size);
      else if (message.type === "status") {
        // The page around the viewer shows the run's status too: it takes it from here
        // (a `run-status` event on the viewer), so the two never disagree.
        if (message.status !== this.status) {
          const detail = { run: this.config.run, status: message.status, final: message.final };
          this.root.dispatchEvent(new CustomEvent("run-status", { bubbles: true, detail: detail }));
        }
        this.status = message.status;
        this.final = message.final;
        this.root.dataset.status = message.status;
        this.settle();
      } else if (message.type === "synced") {
        this.synced = true;
        this.settle();
      }
    }

    // Once a finished run's log is all here, the socket has nothing more to bring.
    settle() {
      if (!this.synced) return;
      if (this.final) {
        this.setState(`Run ${this.status}: complete log loaded.`);
        if (this.socket) this.socket.close(1000);
      } else {
        this.setState("Live");
      }
    }

    discovered(stream, size) {
      if (!(stream in this.sizes)) this.sizes[stream] = size;
      this.fillSources();
      this.showDownloads();
    }

    append(message) {
      const state = this.streams[message.stream];
      if (!state || !this.atEnd) return;
      let bytes = fromBase64(message.data);
      const offset = message.offset;
      // A chunk past our offset would leave a gap: the server resends from our offset.
      if (offset > state.offset || offset + bytes.length <= state.offset) return;
      bytes = bytes.subarray(state.offset - offset);
      const at = state.offset;
      state.offset += bytes.length;
      this.sizes[message.stream] = Math.max(this.sizes[message.stream] || 0, state.offset);
      if (state.skipToLine) {
        const newline = bytes.indexOf(10);
        if (newline < 0) {
          state.start = state.offset;
          return;
        }
        state.start = at + newline + 1;
        state.skipToLine = false;
        bytes = bytes.subarray(newline + 1);
        this.showPaging();
      }
      bytes = joined(state.carry, bytes);
      const cut = bytes.length - incompleteUtf8(bytes);
      state.carry = bytes.slice(cut);
      const [text, hold] = splitIncompleteEscape(state.hold + decoder.decode(bytes.subarray(0, cut)));
      state.hold = hold;
      if (!text) return;
      const end = state.offset - state.carry.length - encoder.encode(hold).length;
      const added = pieces(message.stream, text, end - encoder.encode(text).length);
      for (const piece of added) this.draw(piece);
      this.grow(this.window.length, added);
      // While a page loads, the window's start stays where the page will meet it; the
      // redraw after it rebuilds the terminal from the window anyway.
      if (!this.paging) this.dropOldest();
      this.showPaging();
      if (!this.part("downloads").children.length) this.showDownloads();
    }

    clear() {
      this.term.reset();
      this.term.write("\x1b[?25l");
      // Where the cursor is in the line being drawn, and how far a return took it up.
      this.column = 0;
      this.raised = 0;
    }

    draw(piece) {
      const text = this.returnToLineStart(piece.text);
      this.term.write(isStderr(piece.stream) ? STDERR_ON + text + STDERR_OFF : text);
    }

    // A carriage return goes back to the start of the line, as on the terminal the script
    // would have had, not to the start of the row a line wider than ours wrapped to.
    returnToLineStart(text) {
      const cols = this.term.cols;
      return text.replace(TERMINAL_PARTS, (part) => {
        if (part === "\r") {
          this.raised = this.column > 0 ? Math.floor((this.column - 1) / cols) : 0;
          this.column = 0;
          return this.raised ? `\r\x1b[${this.raised}A` : part;
        }
        if (part === "\n") {
          // Nothing was drawn after the return: the line ends at its last row.
          const down = this.raised ? `\x1b[${this.raised}B` : "";
          this.raised = this.column = 0;
          return down + part;
        }
        if (part[0] !== "\x1b") {
          this.column += part.length;
          this.raised = 0;
        }
        return part;
      });
    }

    // Rows a piece takes at the terminal's width; a line redrawn with carriage
    // returns counts as wide as its widest drawing.
    rowsOf(text) {
      const cols = Math.max(1, this.term.cols);
      let rows = 0;
      for (const line of text.split("\n")) {
        let widest = 0;
        for (const drawing of line.split("\r")) widest = Math.max(widest, drawing.length);
        rows += Math.max(1, Math.ceil(widest / cols));
      }
      return rows;
    }

    grow(at, added) {
      for (const piece of added) {
        piece.rows = this.rowsOf(piece.text);
        this.windowRows += piece.rows;
      }
      this.window.splice(at, 0, ...added);
    }

    // Past the window's size the terminal forgets its first lines: the window's start
    // moves past them. Returns how many pieces went.
    dropOldest() {
      let dropped = 0;
      while (this.windowRows > WINDOW_ROWS && this.window.length > 1) {
        const piece = this.window.shift();
        this.windowRows -= piece.rows;
        this.streams[piece.stream].start = piece.end;
        dropped++;
      }
      return dropped;
    }

    // Paging back, the newest output goes instead, to be loaded again later.
    dropNewest() {
      while (this.windowRows > WINDOW_ROWS && this.window.length > 1) {
        const piece = this.window.pop();
        this.windowRows -= piece.rows;
        const state = this.streams[piece.stream];
        state.offset = piece.start;
        state.carry = new Uint8Array(0);
        state.hold = "";
        if (this.atEnd) {
          this.atEnd = false;
          this.follow();
        }
      }
    }

    // A page of each stream: `range(state)` says which bytes, [from, to), or null for none.
    // Each page is {stream, from, bytes, last} (`last`: it reaches the stream's end).
    async fetchPages(button, range) {
      button.disabled = true;
      this.paging = true;
      this.part("terminal").setAttribute("aria-busy", "true");
      const source = this.source;
      const pages = [];
      try {
        for (const [stream, state] of Object.entries(this.streams)) {
          const wanted = range(state);
          if (!wanted || wanted[1] <= wanted[0]) continue;
          const [from, to] = wanted;
          const url = `${this.config.api}?stream=${encodeURIComponent(stream)}&offset=${from}&limit=${to - from}`;
          const response = await fetch(url, { credentials: "same-origin" });
          if (!response.ok) throw new Error(`the server answered ${response.status}`);
          const bytes = new Uint8Array(await response.arrayBuffer());
          const size = Number(response.headers.get("X-Log-Size"));
          this.sizes[stream] = Math.max(this.sizes[stream] || 0, size);
          pages.push({ stream: stream, from: from, bytes: bytes, last: from + bytes.length >= size });
        }
      } catch (error) {
        this.setState(`Output could not be loaded (${error.message}); try again.`);
        this.paged(button);
        return null;
      }
      if (source === this.source) return pages;
      this.paged(button);
      return null;
    }

    paged(button) {
      button.disabled = false;
      this.paging = false;
      this.part("terminal").setAttribute("aria-busy", "false");
      this.showPaging();
    }

    async loadEarlier() {
      const button = this.part("earlier");
      const pages = await this.fetchPages(button, (state) =>
        state.skipToLine ? null : [Math.max(0, state.start - PAGE_BYTES), state.start],
      );
      if (!pages) return;
      const earlier = [];
      for (const page of pages) {
        let { from, bytes } = page;
        // From the start of a line, unless the page begins the stream.
        const newline = from > 0 ? bytes.indexOf(10) : -1;
        if (newline >= 0) {
          from += newline + 1;
          bytes = bytes.subarray(newline + 1);
        }
        this.streams[page.stream].start = from;
        earlier.push(...pieces(page.stream, decoder.decode(bytes), from));
      }
      this.grow(0, earlier);
      this.dropNewest();
      this.redraw(earlier.length, () => this.paged(button));
    }

    async loadLater() {
      const button = this.part("later");
      const pages = await this.fetchPages(button, (state) => [state.offset, state.offset + PAGE_BYTES]);
      if (!pages) return;
      const at = this.window.length;
      const later = [];
      for (const page of pages) {
        let bytes = page.bytes;
        // To the end of a line (the rest comes with the next page), never inside a character.
        const newline = bytes.lastIndexOf(10);
        bytes = bytes.subarray(0, newline >= 0 ? newline + 1 : bytes.length - incompleteUtf8(bytes));
        this.streams[page.stream].offset = page.from + bytes.length;
        later.push(...pieces(page.stream, decoder.decode(bytes), page.from));
      }
      this.grow(at, later);
      const dropped = this.dropOldest();
      if (pages.every((page) => page.last)) {
        this.atEnd = true;
        this.follow();
      }
      this.redraw(Math.max(0, at - dropped), () => this.paged(button));
    }

    // xterm.js cannot insert above its scrollback: write the window afresh, and keep the
    // reader at the start of its piece number `keep`.
    redraw(keep, done) {
      this.clear();
      let line = 0;
      this.window.forEach((piece, index) => {
        if (index === keep) {
          this.term.write("", () => {
            const buffer = this.term.buffer.active;
            line = buffer.baseY + buffer.cursorY;
          });
        }
        this.draw(piece);
      });
      this.term.write("", () => {
        if (keep < this.window.length) this.term.scrollToLine(line);
        done();
      });
    }

    showPaging() {
      const earlier = Object.values(this.streams).some((state) => state.start > 0 && !state.skipToLine);
      this.part("earlier").hidden = !earlier;
      this.part("later").hidden = this.atEnd;
      this.part("end").hidden = this.atEnd;
      this.showFollow();
    }

    showFollow() {
      const buffer = this.term.buffer.active;
      const following = buffer.viewportY >= buffer.baseY;
      this.part("follow").hidden = following || !this.atEnd;
      this.root.dataset.following = following ? "yes" : "no";
    }

    showDownloads() {
      const links = [];
      for (const stream of Object.keys(this.streams)) {
        if (!this.sizes[stream]) continue;
        const link = document.createElement("a");
        link.href = this.config.download.replace("STREAM", encodeURIComponent(stream));
        link.textContent = `Download ${stream}`;
        link.setAttribute("download", "");
        links.push(link);
      }
      this.part("downloads").replaceChildren(...links);
    }

    setState(text) {
      this.part("state").textContent = text;
    }

    // The terminal's text as a reader sees it, wrapped lines joined.
    text() {
      const buffer = this.term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i++) {
        const line = buffer.getLine(i);
        const text = line.translateToString(true);
        if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
        else lines.push(text);
      }
      while (lines.length && lines[lines.length - 1] === "") lines.pop();
      return lines.join("\n");
    }
  }

  function start() {
    window.trainyardLogViewers = window.trainyardLogViewers || {};
    for (const root of document.querySelectorAll("[data-log-viewer]")) {
      const viewer = new LogViewer(root);
      window.trainyardLogViewers[viewer.config.run] = viewer;
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
