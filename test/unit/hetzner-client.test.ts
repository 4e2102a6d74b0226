import { test } from "node:test";
import assert from "node:assert/strict";
import { isRetryableApiError, mapApiError } from "../../src/providers/hetzner/errors.js";
import { readRateLimit, retryDelayMs } from "../../src/providers/hetzner/retry.js";

const policy = { attempts: 8, baseMs: 400, maxMs: 15_000 };

test("backoff doubles with equal jitter and is capped", () => {
  assert.equal(retryDelayMs(1, policy, 0), 200);
  assert.equal(retryDelayMs(1, policy, 1), 400);
  assert.equal(retryDelayMs(3, policy, 0), 800);
  assert.equal(retryDelayMs(3, policy, 1), 1600);
  assert.equal(retryDelayMs(20, policy, 1), 15_000);
});

test("after a 429 the delay covers one refill interval but never passes RateLimit-Reset", () => {
  const nowMs = 1_000_000_000_000;
  const info = { limit: 3600, remaining: 0, reset: nowMs / 1000 + 30 };
  assert.equal(retryDelayMs(1, policy, 0, { info, nowMs }), 1000);
  assert.equal(retryDelayMs(1, policy, 0, { info: { ...info, limit: 360 }, nowMs }), 10_000);
  assert.equal(
    retryDelayMs(1, policy, 0, { info: { ...info, limit: 360, reset: nowMs / 1000 + 2 }, nowMs }),
    2000,
  );
  assert.equal(
    retryDelayMs(1, policy, 0, { info: { limit: undefined, remaining: undefined, reset: undefined }, nowMs }),
    1000,
  );
});

test("rate-limit headers are read case-insensitively by the caller's getter", () => {
  const h = new Headers({
    "ratelimit-limit": "3600",
    "RateLimit-Remaining": "12",
    "RateLimit-Reset": "1700000000",
  });
  assert.deepEqual(
    readRateLimit((n) => h.get(n)),
    { limit: 3600, remaining: 12, reset: 1700000000 },
  );
  assert.deepEqual(
    readRateLimit(() => null),
    { limit: undefined, remaining: undefined, reset: undefined },
  );
});

test("retryable: 429, 5xx, conflict and locked; not: invalid input, uniqueness, limits, auth", () => {
  assert.equal(isRetryableApiError(429, "rate_limit_exceeded"), true);
  assert.equal(isRetryableApiError(503, "unavailable"), true);
  assert.equal(isRetryableApiError(500, undefined), true);
  assert.equal(isRetryableApiError(409, "conflict"), true);
  assert.equal(isRetryableApiError(423, "locked"), true);
  assert.equal(isRetryableApiError(409, "uniqueness_error"), false);
  assert.equal(isRetryableApiError(400, "invalid_input"), false);
  assert.equal(isRetryableApiError(403, "resource_limit_exceeded"), false);
  assert.equal(isRetryableApiError(401, "unauthorized"), false);
});

test("API error codes map to nixpool codes with hints and exit codes", () => {
  const cases: [number, string, string, number][] = [
    [401, "unauthorized", "HCLOUD_UNAUTHORIZED", 2],
    [403, "forbidden", "HCLOUD_FORBIDDEN", 2],
    [403, "resource_limit_exceeded", "HCLOUD_RESOURCE_LIMIT", 1],
    [409, "uniqueness_error", "HCLOUD_NOT_UNIQUE", 1],
    [400, "invalid_input", "HCLOUD_INVALID_INPUT", 2],
    [404, "not_found", "HCLOUD_NOT_FOUND", 1],
    [429, "rate_limit_exceeded", "HCLOUD_RATE_LIMITED", 1],
    [412, "resource_unavailable", "HCLOUD_RESOURCE_UNAVAILABLE", 1],
    [418, "some_new_code", "HCLOUD_REQUEST_FAILED", 1],
  ];
  for (const [status, code, want, exit] of cases) {
    const e = mapApiError(status, { code, message: "it went wrong." }, "POST /servers");
    assert.equal(e.code, want, code);
    assert.equal(e.exitCode, exit, code);
    assert.ok(e.hint && e.hint.length > 10, code);
    assert.equal(e.message, `Hetzner Cloud refused POST /servers: it went wrong (${code}, HTTP ${status}).`);
  }
  assert.equal(mapApiError(502, undefined, "GET /servers").code, "HCLOUD_SERVER_ERROR");
});
