import { test } from "node:test";
import assert from "node:assert/strict";
import { hostAddresses, MAX_SLOTS, netnsName, vethNames } from "../../src/core/local-net.js";

test("each slot owns a distinct /30 of 10.251.0.0/16", () => {
  assert.deepEqual(hostAddresses(1), { hostAddress: "10.251.0.5", address: "10.251.0.6" });
  assert.deepEqual(hostAddresses(64), { hostAddress: "10.251.1.1", address: "10.251.1.2" });
  assert.deepEqual(hostAddresses(MAX_SLOTS - 1), {
    hostAddress: "10.251.255.253",
    address: "10.251.255.254",
  });
  const seen = new Set<string>();
  for (let s = 0; s < MAX_SLOTS; s += 97) {
    const { hostAddress, address } = hostAddresses(s);
    assert.ok(!seen.has(address));
    seen.add(address);
    seen.add(hostAddress);
  }
  assert.throws(() => hostAddresses(MAX_SLOTS), RangeError);
  assert.throws(() => hostAddresses(-1), RangeError);
});

test("interface names fit the kernel's 15 characters for every slot", () => {
  const { host, builder } = vethNames(MAX_SLOTS - 1);
  assert.ok(host.length <= 15 && builder.length <= 15);
  assert.notEqual(host, builder);
  assert.equal(netnsName(3), "nixpool-3");
});
