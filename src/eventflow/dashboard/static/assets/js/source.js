// Who sent an event: the signed-in user's token, or one of the account's API keys (with the
// SDK that used it, when the SDK said). A chip for the feed, a description for the drawer.

import { h } from "./dom.js";

export const library = (lib) => (lib ? `${lib.name} ${lib.version}`.trim() : "");

// One line for a tooltip or a screen reader.
export function describeSource(source) {
  if (!source) return "";
  if (source.kind !== "key") return "Sent with a user token";
  const sdk = library(source.library);
  return `Sent with key ${source.key_name}${sdk ? ` by ${sdk}` : ""}`;
}

export function sourceChip(source) {
  if (!source) return h("span", { class: "source" });
  if (source.kind !== "key") return h("span", { class: "source", data: { kind: "token" }, title: describeSource(source), text: "token" });
  // The key's name is what tells apps apart at a glance; the SDK is in the tooltip and drawer.
  return h("span", { class: "source", data: { kind: "key" }, title: describeSource(source), text: source.key_name });
}

// The drawer's "Source" value. `prefixOf(keyId)` answers the key's prefix when the Keys panel
// knows the key (a revoked key may no longer be listed: then its id is shown alone).
export function sourceDetails(source, prefixOf = () => "") {
  if (!source) return [h("span", { class: "muted", text: "–" })];
  if (source.kind !== "key") return [h("strong", { text: "User token" }), h("span", { class: "muted", text: "the dashboard or a signed-in API call" })];
  const prefix = prefixOf(source.key_id);
  const sdk = library(source.library);
  return [
    h("strong", { class: "source-key", text: `Key “${source.key_name}”` }),
    h("span", { class: "mono muted", text: prefix ? `${prefix}… · id ${source.key_id}` : `id ${source.key_id}` }),
    h("span", { class: sdk ? "source-lib" : "muted", text: sdk ? `SDK ${sdk}` : "No SDK library reported" }),
  ];
}
