import { connect } from "node:net";

/** Whether a process accepts connections on a Unix socket (a stale socket file answers nothing). */
export function unixSocketAnswers(path: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      resolve(false);
    });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
