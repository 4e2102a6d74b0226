import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { startHetznerEmulator, type RunningEmulator } from "../../src/emulator/hetzner/serve.js";
import { makeTempDir } from "../helpers/cli.js";
import { TEST_TOKEN } from "../helpers/hetzner-emulator.js";
import { waitFor } from "../../src/adapters/wait-for.js";

/** test/fixtures/hcloud-python-images.py: python-hcloud against the image endpoints. */
const PYTHON_CHECK = resolve(import.meta.dirname, "../fixtures/hcloud-python-images.py");

describe("the official hcloud CLI against the emulator", { timeout: 120_000 }, () => {
  let emu: RunningEmulator;
  let dir: string;
  let cleanup: () => Promise<void>;
  const hcloud = async (args: string[]) => {
    const r = await run(["hcloud", ...args], {
      reject: false,
      timeout: 60_000,
      env: {
        HCLOUD_ENDPOINT: emu.endpoint,
        HCLOUD_TOKEN: TEST_TOKEN,
        HCLOUD_CONFIG: join(dir, "cli.toml"),
        HOME: dir,
      },
    });
    assert.equal(r.exitCode, 0, `hcloud ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };

  /** hcloud prints `null` for an empty list. */
  const listJson = async <T>(args: string[]): Promise<T[]> =>
    (JSON.parse(await hcloud(args)) as T[] | null) ?? [];

  before(async () => {
    ({ dir, cleanup } = await makeTempDir("nixpool-hcloud-"));
    await writeFile(join(dir, "cli.toml"), "");
    emu = await startHetznerEmulator({
      tokens: [TEST_TOKEN],
      timing: { createMs: 300, bootMs: 50, deleteMs: 100 },
    });
  });
  after(async () => {
    await emu?.close();
    await cleanup?.();
  });

  test("ssh-key create, list, delete", async () => {
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(dir, "key")]);
    assert.match(
      await hcloud([
        "ssh-key",
        "create",
        "--name",
        "cli-key",
        "--public-key-from-file",
        join(dir, "key.pub"),
      ]),
      /created/,
    );
    const list = JSON.parse(await hcloud(["ssh-key", "list", "-o", "json"])) as {
      name: string;
      fingerprint: string;
    }[];
    assert.deepEqual(
      list.map((k) => k.name),
      ["cli-key"],
    );
    const fp = (await run(["ssh-keygen", "-l", "-E", "md5", "-f", join(dir, "key.pub")])).stdout.split(
      /\s+/,
    )[1];
    assert.equal(`MD5:${list[0]?.fingerprint}`, fp);
    assert.match(
      await hcloud(["ssh-key", "describe", "cli-key"]),
      new RegExp(`Fingerprint:\\s+${list[0]?.fingerprint}`),
    );
    await hcloud(["ssh-key", "update", "cli-key", "--name", "renamed-key"]);
    await hcloud(["ssh-key", "add-label", "renamed-key", "nixpool=1"]);
    await hcloud(["ssh-key", "add-label", "renamed-key", "role=ci"]);
    await hcloud(["ssh-key", "remove-label", "renamed-key", "role"]);
    const described = JSON.parse(await hcloud(["ssh-key", "describe", "renamed-key", "-o", "json"])) as {
      name: string;
      labels: Record<string, string>;
    };
    assert.deepEqual([described.name, described.labels], ["renamed-key", { nixpool: "1" }]);
    assert.deepEqual(
      (await listJson<{ name: string }>(["ssh-key", "list", "-o", "json", "-l", "nixpool=1"])).map(
        (k) => k.name,
      ),
      ["renamed-key"],
    );
    await hcloud(["ssh-key", "delete", "renamed-key"]);
    assert.deepEqual(await listJson(["ssh-key", "list", "-o", "json"]), []);
  });

  test("server-type list and describe", async () => {
    const types = JSON.parse(await hcloud(["server-type", "list", "-o", "json"])) as {
      name: string;
      cores: number;
    }[];
    assert.ok(types.some((t) => t.name === "cx23" && t.cores === 2));
    const described = await hcloud(["server-type", "describe", "cpx32"]);
    assert.match(described, /Cores:\s+4/);
    assert.match(described, /Location:\s+fsn1/);
  });

  test("server create, list, describe, delete", async () => {
    await hcloud(["ssh-key", "create", "--name", "srv-key", "--public-key-from-file", join(dir, "key.pub")]);
    const created = await hcloud([
      "server",
      "create",
      "--name",
      "cli-server",
      "--type",
      "cx23",
      "--image",
      "debian-12",
      "--location",
      "nbg1",
      "--ssh-key",
      "srv-key",
      "--label",
      "nixpool=1",
    ]);
    assert.match(created, /Server \d+ created/);
    const ip = /IPv4:\s+(\S+)/.exec(created)?.[1];
    assert.ok(ip);
    const list = JSON.parse(await hcloud(["server", "list", "-o", "json", "-l", "nixpool=1"])) as {
      name: string;
      status: string;
      public_net: { ipv4: { ip: string } };
    }[];
    assert.deepEqual(
      list.map((s) => [s.name, s.status, s.public_net.ipv4.ip]),
      [["cli-server", "running", ip]],
    );
    const described = await hcloud(["server", "describe", "cli-server"]);
    assert.match(described, /Name:\s+cli-server/);
    assert.match(described, /Server Type:\s+cx23/);
    assert.match(described, /nixpool:\s+1|nixpool=1/);
    await hcloud(["server", "delete", "cli-server"]);
    await waitFor(async () => (await listJson(["server", "list", "-o", "json"])).length === 0, {
      timeoutMs: 5000,
      intervalMs: 100,
    });
    assert.deepEqual(await listJson(["server", "list", "-o", "json"]), []);
  });

  test("snapshots: server create-image, image list -t snapshot -l, enable-protection, delete", async () => {
    await hcloud(["server", "create", "--name", "img-src", "--type", "cx33", "--image", "debian-12"]);
    const created = await hcloud([
      "server",
      "create-image",
      "--type",
      "snapshot",
      "--description",
      "warm worker",
      "--label",
      "nixpool=1",
      "--label",
      "pool=p1",
      "img-src",
    ]);
    const id = /Image (\d+) created/.exec(created)?.[1];
    assert.ok(id, created);
    const list = await listJson<{ id: number; type: string; status: string; labels: Record<string, string> }>(
      ["image", "list", "-t", "snapshot", "-l", "pool=p1", "-o", "json"],
    );
    assert.deepEqual(
      list.map((i) => [String(i.id), i.type, i.status, i.labels["pool"]]),
      [[id, "snapshot", "available", "p1"]],
    );
    assert.deepEqual(await listJson(["image", "list", "-t", "snapshot", "-l", "pool=p2", "-o", "json"]), []);
    assert.match(await hcloud(["image", "describe", id]), /Description:\s+warm worker/);
    await hcloud(["image", "enable-protection", id, "delete"]);
    const refused = await run(["hcloud", "image", "delete", id], {
      reject: false,
      timeout: 60_000,
      env: {
        HCLOUD_ENDPOINT: emu.endpoint,
        HCLOUD_TOKEN: TEST_TOKEN,
        HCLOUD_CONFIG: join(dir, "cli.toml"),
        HOME: dir,
      },
    });
    assert.notEqual(refused.exitCode, 0);
    assert.match(refused.stderr, /protected/);
    await hcloud(["image", "disable-protection", id, "delete"]);
    await hcloud(["image", "delete", id]);
    assert.deepEqual(await listJson(["image", "list", "-t", "snapshot", "-o", "json"]), []);
    await hcloud(["server", "delete", "img-src"]);
  });
  test("python-hcloud, Hetzner's Python client: a server's snapshot found by label, protected, deleted; image prices", async () => {
    const r = await run(["/usr/bin/python3", PYTHON_CHECK], {
      reject: false,
      timeout: 60_000,
      env: { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: TEST_TOKEN },
    });
    assert.equal(r.exitCode, 0, r.stderr);
    const seen = JSON.parse(r.stdout) as {
      status: string;
      created_from: number;
      disk_size: number;
      found: boolean[];
      refused: string | null;
      remaining: number;
      image_price: string | null;
      server: number;
    };
    assert.equal(seen.status, "available");
    assert.equal(seen.created_from, seen.server);
    assert.ok(seen.disk_size > 0);
    assert.deepEqual(seen.found, [true], "found by type and label selector");
    assert.equal(seen.refused, "protected", "a protected image is not deleted");
    assert.equal(seen.remaining, 0);
    assert.match(seen.image_price ?? "", /^\d+\.\d+$/);
  });
});
