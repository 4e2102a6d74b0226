import { request } from "node:http";
import { execa } from "execa";
import { waitFor } from "../../src/adapters/wait-for.js";
import { CLI } from "./cli.js";

/** A running `nixpool serve` (a real process), with what it printed. */
export interface ServeProcess {
  pid: number | undefined;
  /** http://127.0.0.1:PORT */
  url: string;
  socket: string;
  stdout: () => string;
  stderr: () => string;
  /** Sends a signal (unless it has exited) and waits for the exit; returns the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | undefined>;
  /** Waits for the exit, sending nothing. */
  exited: () => Promise<number | undefined>;
}

/**
 * Starts `nixpool --state-dir DIR GLOBAL… serve --listen 127.0.0.1:0 ARGS…` and waits until it
 * answers (a later `--listen` in ARGS wins); `env` is added to this process's environment;
 * `prefix` runs it through another command that then execs node (e.g. `ip netns exec NS`).
 */
export async function startServe(
  stateDir: string,
  args: readonly string[] = [],
  global: readonly string[] = [],
  /** Added to this process's environment (e.g. NIX_CONFIG for the coordinator's own store). */
  env: Record<string, string> = {},
  /** Runs it through this argv first (e.g. hostExecArgv: on a local host, with its own store). */
  prefix: readonly string[] = [],
): Promise<ServeProcess> {
  let out = "";
  let err = "";
  const argv = [CLI, "--state-dir", stateDir, ...global, "serve", "--listen", "127.0.0.1:0", ...args];
  const [command = "node", ...rest] = [...prefix, "node", ...argv];
  const proc = execa(command, rest, {
    reject: false,
    buffer: false,
    stdin: "ignore",
    env,
  });
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  let exited = false;
  void proc.then(() => (exited = true));
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (!exited) proc.kill(signal);
    return (await proc).exitCode;
  };
  try {
    const found = await waitFor(
      () => {
        if (exited) throw new Error(`nixpool serve exited early:\n${out}\n${err}`);
        const url = /API and dashboard on (http:\/\/\S+)/.exec(out)?.[1];
        const socket = /API on unix:(\S+)/.exec(out)?.[1];
        return url && socket ? { url, socket } : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    if (!found) throw new Error(`nixpool serve did not listen within 60 s:\n${out}\n${err}`);
    const exitedCode = async () => (await proc).exitCode;
    return { pid: proc.pid, ...found, stdout: () => out, stderr: () => err, stop, exited: exitedCode };
  } catch (e) {
    await stop("SIGKILL");
    throw e;
  }
}

/** An HTTP request over a Unix socket (as this process's user): status and body. */
export function socketRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method, path, headers: { "Content-Type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.once("error", reject);
    req.end(body);
  });
}

/** A tiny client that another user runs with /usr/bin/node (it reads nothing of the checkout). */
export function socketRequestScript(
  socketPath: string,
  method: string,
  path: string,
  /** A JSON body, sent with Content-Type: application/json. */
  body?: string,
): string[] {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const js = `const r=require("http").request({socketPath:${JSON.stringify(socketPath)},method:${JSON.stringify(method)},path:${JSON.stringify(path)},headers:${JSON.stringify(headers)}},(res)=>{let t="";res.on("data",(d)=>t+=d);res.on("end",()=>{process.stdout.write(JSON.stringify({status:res.statusCode,body:t}))})});r.on("error",(e)=>{process.stdout.write(JSON.stringify({error:e.code}))});r.end(${JSON.stringify(body ?? "")});`;
  return ["/usr/bin/node", "-e", js];
}
