// Short-lived notices in a corner; they never steal focus.

import { $, h } from "./dom.js";

const LIFETIME_MS = 4500;
const MAX_SHOWN = 3;

export function toast(message, { tone = "ok", detail = "", action = null } = {}) {
  const close = () => {
    item.classList.add("leaving");
    setTimeout(() => item.remove(), 250);
  };
  const item = h(
    "div",
    { class: `toast ${tone}`, role: tone === "error" ? "alert" : "status" },
    h("div", { class: "toast-text" }, h("strong", { text: message }), detail ? h("span", { text: detail }) : null),
    action ? h("button", { class: "btn ghost small", type: "button", text: action.label, onclick: () => (action.run(), close()) }) : null,
  );
  const stack = $("#toasts");
  stack.append(item);
  while (stack.children.length > MAX_SHOWN) stack.firstElementChild.remove();
  setTimeout(close, tone === "error" ? LIFETIME_MS * 2 : LIFETIME_MS);
}
