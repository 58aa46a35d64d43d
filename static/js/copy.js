// Copy buttons: <button type="button" data-copy="ID">Copy</button> copies the value of the
// element with that id, and the status next to the button tells sighted and screen-reader
// users whether it worked.
(function () {
  "use strict";

  // navigator.clipboard exists only in secure contexts (HTTPS or localhost): a studio
  // opened over plain HTTP at a LAN address copies through a selected textarea instead.
  function copyBySelection(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.readOnly = true;
    area.setAttribute("aria-hidden", "true");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    area.remove();
    return copied;
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(
        function () { return true; },
        function () { return copyBySelection(text); }
      );
    }
    return Promise.resolve(copyBySelection(text));
  }

  function announce(button, source, copied) {
    const status = button.parentElement.querySelector(".copy-status");
    if (!copied) {
      // Leave the text selected so the user can copy it with the keyboard.
      source.select();
    }
    status.textContent = copied ? "Copied" : "Press Ctrl+C to copy";
    clearTimeout(status.clearTimer);
    status.clearTimer = setTimeout(function () { status.textContent = ""; }, 4000);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) {
      return;
    }
    const source = document.getElementById(button.dataset.copy);
    copy(source.value).then(function (copied) { announce(button, source, copied); });
  });
})();
