// Sends Segment calls to EventFlow with the real @segment/analytics-node, unmodified.
//
//   node send.js HOST WRITE_KEY RUN [COUNT]
//
// track, identify and page calls, then COUNT (default 1000) track calls flushed together;
// every messageId starts with RUN so that the test can count them. Prints one JSON line:
// {"sent": N, "errors": [...]}, and exits non-zero if the library reported an error.
"use strict";

const { Analytics } = require("@segment/analytics-node");

async function main() {
  const [host, writeKey, run, count = "1000"] = process.argv.slice(2);
  if (!host || !writeKey || !run) {
    console.error("usage: node send.js HOST WRITE_KEY RUN [COUNT]");
    process.exit(2);
  }
  const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 100, flushInterval: 200 });
  const errors = [];
  analytics.on("error", (err) => errors.push(String(err.reason || err.message || err)));
  let sent = 0;
  const id = (suffix) => `${run}-node-${suffix}`;
  analytics.track({ userId: "ada", event: "Order Completed", properties: { total: 42.5 }, messageId: id("track") });
  analytics.identify({ userId: "ada", traits: { plan: "pro" }, messageId: id("identify") });
  analytics.page({ userId: "ada", name: "Home", properties: { path: "/" }, messageId: id("page") });
  sent += 3;
  for (let n = 0; n < Number(count); n++) {
    analytics.track({ anonymousId: `anon-${n}`, event: "Item Viewed", properties: { n }, messageId: id(`flush-${n}`) });
    sent += 1;
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  console.log(JSON.stringify({ sent, errors }));
  process.exit(errors.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
