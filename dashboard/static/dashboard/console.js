// The console's own behaviour on top of htmx: confirmation dialogs, copy buttons, toasts,
// the notice banner and the loading state. Everything is delegated from `document`, so it
// keeps working after htmx swaps parts of the page.
"use strict";

(function () {
  function showToast(level, message) {
    const box = document.getElementById("toasts");
    if (!box || !message) return;
    const toast = document.createElement("p");
    toast.className = "toast toast-" + (level || "info");
    toast.textContent = message;
    box.append(toast);
    setTimeout(function () { toast.remove(); }, 5000);
  }

  // hx-confirm asks in the page's own <dialog> rather than window.confirm.
  document.addEventListener("htmx:confirm", function (event) {
    const question = event.detail.question;
    const dialog = document.getElementById("confirm-dialog");
    if (!question || !dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    dialog.querySelector("[data-confirm-question]").textContent = question;
    dialog.returnValue = "";
    dialog.addEventListener("close", function () {
      if (dialog.returnValue === "confirm") event.detail.issueRequest(true);
    }, { once: true });
    dialog.showModal();
  });

  function copyWithoutClipboardApi(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (button) {
      const text = button.dataset.copy;
      const done = function () {
        showToast("success", button.dataset.copiedText || "Copied");
        button.classList.add("copied");
        setTimeout(function () { button.classList.remove("copied"); }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () {
          copyWithoutClipboardApi(text);
          done();
        });
      } else {
        copyWithoutClipboardApi(text);
        done();
      }
      return;
    }
    const dismiss = event.target.closest("[data-dismiss-notice]");
    if (dismiss) {
      const notice = dismiss.closest("[data-notice]");
      localStorage.setItem("dashboard:notice", fingerprint(notice.textContent));
      notice.hidden = true;
    }
  });

  // A textarea that must hold a JSON object (a channel's model mapping) says so as you type,
  // with the message its data-json-object attribute carries; the server decides on submit.
  function jsonObjectProblem(text) {
    if (!text.trim()) return false;
    try {
      const value = JSON.parse(text);
      return value === null || typeof value !== "object" || Array.isArray(value);
    } catch (error) {
      return true;
    }
  }

  document.addEventListener("input", function (event) {
    const area = event.target;
    if (!(area instanceof HTMLTextAreaElement) || !area.hasAttribute("data-json-object")) return;
    const problem = jsonObjectProblem(area.value);
    let hint = document.getElementById(area.id + "-json-hint");
    if (!hint) {
      hint = document.createElement("p");
      hint.id = area.id + "-json-hint";
      hint.className = "errorlist json-hint";
      hint.setAttribute("aria-live", "polite");
      area.after(hint);
    }
    hint.textContent = problem ? area.dataset.jsonObject : "";
    hint.hidden = !problem;
    area.setAttribute("aria-invalid", problem ? "true" : "false");
  });

  // A notice stays hidden once dismissed, until its text changes.
  function fingerprint(text) {
    let hash = 0;
    for (let i = 0; i < text.length; i++) hash = (hash * 31 + text.charCodeAt(i)) | 0;
    return String(hash);
  }

  function applyNotice() {
    const notice = document.querySelector("[data-notice]");
    if (notice && localStorage.getItem("dashboard:notice") === fingerprint(notice.textContent)) {
      notice.hidden = true;
    }
  }

  // Toasts the server asks for with `HX-Trigger: {"toast": {...}}`.
  document.addEventListener("toast", function (event) {
    showToast(event.detail.level, event.detail.message);
  });

  // Loading state: a bar at the top of the page, and aria-busy on what is being replaced.
  let pending = 0;
  document.addEventListener("htmx:beforeRequest", function (event) {
    pending += 1;
    document.documentElement.classList.add("is-loading");
    if (event.detail.target) event.detail.target.setAttribute("aria-busy", "true");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    pending = Math.max(0, pending - 1);
    if (!pending) document.documentElement.classList.remove("is-loading");
    if (event.detail.target) event.detail.target.removeAttribute("aria-busy");
    if (event.detail.failed && !event.detail.successful && event.detail.xhr && event.detail.xhr.status === 0) {
      showToast("error", document.documentElement.lang.startsWith("zh") ? "网络错误" : "Network error");
    }
  });

  // After a boosted navigation, move focus to the new content (as a page load would).
  document.addEventListener("htmx:afterSettle", function (event) {
    applyNotice();
    if (event.detail.boosted) {
      const main = document.getElementById("main");
      if (main) main.focus({ preventScroll: true });
    }
  });

  document.addEventListener("DOMContentLoaded", applyNotice);
})();
