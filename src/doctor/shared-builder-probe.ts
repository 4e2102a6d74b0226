// On a shared builder (members in STATE/users.toml), the check `access sshd-config` makes: can
// sshd's AuthorizedKeysCommandUser run the keys command and reach the precompiled answers?
import { stat } from "node:fs/promises";
import { caExists, resolveCaPaths } from "../access/ca.js";
import { checkKeysCommandSetup, keysCommandPath } from "../access/keys-command-setup.js";
import { resolveAccessPaths } from "../access/paths.js";
import { readStaticTarget } from "../access/static-files.js";
import { run } from "../adapters/runner.js";
import type { SshdAnswerKind } from "../core/access/keys-command-script.js";
import { failCheck, passCheck, type CheckResult } from "../core/doctor/model.js";
import { isNixpoolError } from "../core/errors.js";

const ID = "local.keys-command";
const TITLE = "sshd keys command";

/** The keys command and user sshd is configured with (sshd -T), when it is nixpool's for STATE. */
export function parseSshdKeysCommand(
  effective: string,
  stateDir: string,
): { command: string; user: string; protocol: "ssh-ng" | "ssh" } | undefined {
  const value = (key: string) =>
    effective
      .split("\n")
      .find((l) => l.startsWith(`${key} `))
      ?.slice(key.length + 1)
      .trim();
  const argv = (value("authorizedkeyscommand") ?? "").split(/\s+/);
  const at = argv.indexOf("--state-dir");
  if (at < 0 || argv[at + 1] !== stateDir || !argv[0]) return undefined;
  const protocol = argv[argv.indexOf("--protocol") + 1] === "ssh" ? "ssh" : "ssh-ng";
  return { command: argv[0], user: value("authorizedkeyscommanduser") ?? "nobody", protocol };
}

/** The doctor's row for a shared builder; none when this state directory has no members. */
export async function probeSharedBuilder(stateDir: string): Promise<CheckResult[]> {
  const paths = resolveAccessPaths(stateDir);
  if (!(await stat(paths.usersFile).catch(() => undefined))) return [];
  const target = await readStaticTarget(paths).catch(() => undefined);
  const sshdT = await run(["/usr/sbin/sshd", "-T"], { reject: false, timeout: 5000 }).catch(() => undefined);
  const configured = parseSshdKeysCommand(sshdT?.exitCode === 0 ? sshdT.stdout : "", stateDir);
  if (!configured && target) {
    return [
      passCheck(ID, TITLE, `Members' keys come from static files in ${target.dir} (access sync --write).`),
    ];
  }
  const command = configured?.command ?? keysCommandPath();
  const user = configured?.user ?? "nobody";
  const kinds: SshdAnswerKind[] = [configured?.protocol ?? "ssh-ng"];
  if (await caExists(resolveCaPaths(paths.caDir))) kinds.push("principals");
  let problems;
  try {
    problems = await checkKeysCommandSetup({ command, commandUser: user, paths, kinds });
  } catch (e) {
    if (!isNixpoolError(e)) throw e;
    problems = [e];
  }
  const [first] = problems;
  if (!first) {
    return [passCheck(ID, TITLE, `${user} can run ${command} and read ${paths.sshdDir}.`)];
  }
  return [
    failCheck(ID, TITLE, first.message, {
      ...(first.hint ? { fix: first.hint } : {}),
      data: {
        command,
        commandUser: user,
        fromSshdConfig: configured !== undefined,
        problems: problems.map((p) => ({ code: p.code, message: p.message, hint: p.hint })),
      },
    }),
  ];
}
