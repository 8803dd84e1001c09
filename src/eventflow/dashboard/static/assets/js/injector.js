// The event injector: a type, a JSON payload checked before it is sent (the error is shown
// where it is), an optional delay, and "send N" through the batch endpoint.

import { $, $$ } from "./dom.js";
import { count } from "./format.js";
import { findJsonError } from "./jsoncheck.js";
import { toast } from "./toast.js";

const TYPE = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;
const MAX_BATCH = 1000;
const MAX_DELAY_MS = 604_800_000;
const MAX_PAYLOAD_BYTES = 65_536;

const pick = (items) => items[Math.floor(Math.random() * items.length)];
const tag = (prefix) => `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
const money = (min, max) => Math.round((min + Math.random() * (max - min)) * 100) / 100;

export const TEMPLATES = {
  ORDER_CREATED: () => ({
    order_id: tag("ord"),
    customer_id: tag("cus"),
    amount: money(12, 480),
    currency: pick(["EUR", "USD", "GBP"]),
    items: [{ sku: `SKU-${1000 + Math.floor(Math.random() * 9000)}`, quantity: 1 + Math.floor(Math.random() * 3) }],
  }),
  USER_SIGNUP: () => ({
    user_id: tag("usr"),
    email: `${pick(["ada", "grace", "linus", "margaret"])}+${Math.floor(Math.random() * 999)}@example.com`,
    plan: pick(["free", "pro", "team"]),
    referrer: pick(["newsletter", "search", "friend"]),
  }),
  PAYMENT_PROCESSED: () => ({
    payment_id: tag("pay"),
    order_id: tag("ord"),
    amount: money(5, 900),
    currency: "EUR",
    method: pick(["card", "sepa", "wallet"]),
  }),
  SYSTEM_ALERT: () => ({
    severity: pick(["info", "warning", "critical"]),
    service: pick(["billing-api", "search", "checkout"]),
    message: "p95 latency above 800 ms for 5 minutes",
    region: pick(["eu-west-1", "us-east-1"]),
  }),
  FAIL_TEST: () => ({ reason: "Always fails: shows retries with backoff, then dead-lettering" }),
};

export function checkPayload(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const found = findJsonError(text);
    if (!found) return { error: error.message };
    const before = text.slice(0, found.position).split("\n");
    const where = { line: before.length, column: before.at(-1).length + 1, position: found.position };
    return { error: `Line ${where.line}, column ${where.column}: ${found.message}`, where };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: 'The payload must be a JSON object, like {"key": "value"}' };
  if (new TextEncoder().encode(JSON.stringify(value)).length > MAX_PAYLOAD_BYTES) return { error: `The payload is larger than ${count(MAX_PAYLOAD_BYTES)} bytes` };
  return { value };
}

export function mountInjector({ api, onSent }) {
  const form = $("#injector");
  const editor = form.elements.payload;
  const custom = form.elements.custom_type;
  const problem = $("#payload-error");
  let type = "ORDER_CREATED";

  function fill(eventType, payload) {
    editor.value = JSON.stringify(payload ?? (TEMPLATES[eventType] || (() => ({})))(), null, 2);
    validate();
  }

  function selectType(next) {
    type = next;
    for (const chip of $$("[data-type]", form)) chip.setAttribute("aria-pressed", String(chip.dataset.type === type));
    custom.hidden = type !== "custom";
    if (type === "custom") custom.focus();
  }

  function validate() {
    const result = checkPayload(editor.value);
    problem.textContent = result.error || "";
    editor.setAttribute("aria-invalid", result.error ? "true" : "false");
    return result;
  }

  function showError(input, message) {
    input.setAttribute("aria-invalid", "true");
    toast("Not sent", { tone: "error", detail: message });
    input.focus();
  }

  async function send(event) {
    event.preventDefault();
    const eventType = type === "custom" ? custom.value.trim() : type;
    if (!TYPE.test(eventType)) return showError(custom, "A type starts with a letter, then up to 99 letters, digits or _ . : -");
    custom.setAttribute("aria-invalid", "false");
    const { value: payload, where } = validate();
    if (!payload) {
      editor.focus();
      if (where) editor.setSelectionRange(where.position, where.position + 1);
      return;
    }
    const delay = form.elements.delay_ms.value ? Number(form.elements.delay_ms.value) : 0;
    if (!Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY_MS) return showError(form.elements.delay_ms, "The delay is 0 to 604,800,000 ms");
    const n = Number(form.elements.count.value || 1);
    if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH) return showError(form.elements.count, `Send 1 to ${count(MAX_BATCH)} events at once`);

    const body = { type: eventType, payload, ...(delay ? { delay_ms: delay } : {}) };
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      if (n === 1) {
        const accepted = await api.post("/api/v1/events", body);
        toast(`${eventType} accepted`, { detail: accepted.id, action: { label: "Open", run: () => onSent(accepted.id) } });
      } else {
        const accepted = await api.post("/api/v1/events/batch", { events: Array.from({ length: n }, () => body) });
        toast(`${count(accepted.accepted)} events accepted`, { detail: `${eventType} × ${count(n)} in one batch` });
      }
      if (TEMPLATES[type]) fill(type); // a fresh sample, so the next send is a new order, etc.
    } catch (error) {
      if (error.status !== 401) toast("Not sent", { tone: "error", detail: error.message });
    } finally {
      button.disabled = false;
    }
  }

  for (const chip of $$("[data-type]", form)) {
    chip.addEventListener("click", () => {
      selectType(chip.dataset.type);
      fill(chip.dataset.type);
    });
  }
  let typing = 0;
  editor.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(validate, 200);
  });
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  $("#payload-format").addEventListener("click", () => {
    const { value } = validate();
    if (value) editor.value = JSON.stringify(value, null, 2);
  });
  $("#payload-sample").addEventListener("click", () => fill(type));
  form.addEventListener("submit", send);
  selectType(type);
  fill(type);

  return {
    // "Use as template" from the drawer.
    load(event) {
      const known = Object.hasOwn(TEMPLATES, event.type);
      selectType(known ? event.type : "custom");
      if (!known) custom.value = event.type;
      fill(event.type, event.payload);
      editor.focus();
    },
  };
}
