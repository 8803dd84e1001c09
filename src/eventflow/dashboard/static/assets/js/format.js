// Numbers, durations and times as the dashboard prints them.

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat("en");

export const count = (n) => (n >= 100_000 ? compact.format(n) : whole.format(n));

export function rate(perSecond) {
  if (!perSecond) return "0";
  if (perSecond < 10) return perSecond.toFixed(1).replace(/\.0$/, "");
  return count(Math.round(perSecond));
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return `${(value / 60_000).toFixed(1)} min`;
}

export function percent(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  const p = ratio * 100;
  return `${p === 100 || p === 0 ? p.toFixed(0) : p.toFixed(1)}%`;
}

export function ago(iso, now = Date.now()) {
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 0) return until(iso, now);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
}

export function until(iso, now = Date.now()) {
  const seconds = Math.ceil((Date.parse(iso) - now) / 1000);
  if (seconds <= 0) return "now";
  if (seconds < 60) return `in ${seconds}s`;
  if (seconds < 3600) return `in ${Math.ceil(seconds / 60)}m`;
  return `in ${Math.round(seconds / 3600)}h`;
}

const STAMP = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false };

// "Nov 28, 03:13:24.512": events happen milliseconds apart, so the milliseconds are shown.
export const clock = (iso) => (iso ? new Date(iso).toLocaleString(undefined, STAMP) : "–");

export const shortId = (id) => `${id.slice(0, 8)}…${id.slice(-4)}`;
