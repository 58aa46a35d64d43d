// A shell on a compute target: xterm.js over the terminal websocket (compute/consumers.py).
(function () {
  "use strict";
  // The server refuses frames over 16 KiB; a paste goes in pieces well below that.
  const CHUNK = 4096;

  function start(root) {
    const state = root.querySelector('[data-role="state"]');
    const term = new Terminal({
      cursorBlink: true,
      scrollback: 5000,
      fontSize: 13,
      fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, monospace',
      theme: { background: "#0f1419", foreground: "#e6e6e6" },
    });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(root.querySelector('[data-role="terminal"]'));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + root.dataset.socket);
    socket.binaryType = "arraybuffer";
    let ended = false;

    const send = (message) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    };
    const resize = () => {
      fit.fit();
      send({ type: "resize", cols: term.cols, rows: term.rows });
    };
    new ResizeObserver(resize).observe(root.querySelector('[data-role="terminal"]'));
    term.onData((data) => {
      for (let i = 0; i < data.length; i += CHUNK) send({ type: "input", data: data.slice(i, i + CHUNK) });
    });

    socket.onmessage = (event) => {
      if (typeof event.data !== "string") {
        term.write(new Uint8Array(event.data));
        return;
      }
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        state.textContent = "Connected.";
        resize();
        term.focus();
      } else if (message.type === "ended") {
        ended = true;
        state.textContent = message.message;
      }
    };
    socket.onclose = (event) => {
      if (event.code === 4403) state.textContent = "Only Contributors and Owners of this workspace may open a terminal.";
      else if (event.code === 4413 || event.code === 4429) state.textContent = "Closed: the paste was too large. Reload the page to open a new terminal.";
      else if (!ended) state.textContent = "Disconnected. Reload the page to open a new terminal.";
      term.options.disableStdin = true;
    };
    // Closing the page ends the shell rather than leaving it to the idle limit.
    window.addEventListener("pagehide", () => socket.close());
    window.trainyardTerminal = { term, socket };
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-terminal]").forEach(start);
  });
})();
