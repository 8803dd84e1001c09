// Where JSON text first goes wrong, so the editor can point at it. JSON.parse says whether text
// is valid, but its messages differ between browsers and often carry no position.

const SPACE = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class JsonError extends Error {
  constructor(message, position) {
    super(message);
    this.position = position;
  }
}

// { message, position } of the first error, or null if the text is valid (or too deep to scan).
export function findJsonError(text) {
  let at = 0;
  const fail = (message) => {
    throw new JsonError(message, at);
  };
  const match = (pattern) => {
    pattern.lastIndex = at;
    const found = pattern.test(text);
    if (found) at = pattern.lastIndex;
    return found;
  };

  function value() {
    match(SPACE);
    const next = text[at];
    if (next === "{") return members("}", property);
    if (next === "[") return members("]", value);
    if (next === '"') return match(STRING) || fail("Unterminated string or invalid escape");
    if (match(NUMBER)) return;
    const word = ["true", "false", "null"].find((w) => text.startsWith(w, at));
    if (word) return void (at += word.length);
    fail(at < text.length ? "Expected a value (string, number, object, array, true, false or null)" : "Unexpected end: a value is missing");
  }

  function property() {
    match(SPACE);
    if (text[at] !== '"') fail("Expected a property name in double quotes");
    match(STRING) || fail("Unterminated string or invalid escape");
    match(SPACE);
    if (text[at] !== ":") fail('Expected ":" after the property name');
    at++;
    value();
  }

  function members(close, item) {
    at++;
    match(SPACE);
    if (text[at] === close) return void at++;
    for (;;) {
      item();
      match(SPACE);
      if (text[at] === close) return void at++;
      if (text[at] !== ",") fail(`Expected "," or "${close}"`);
      at++;
    }
  }

  try {
    value();
    match(SPACE);
    if (at < text.length) fail("Unexpected text after the end of the JSON value");
    return null;
  } catch (error) {
    return error instanceof JsonError ? { message: error.message, position: error.position } : null;
  }
}
