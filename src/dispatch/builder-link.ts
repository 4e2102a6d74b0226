import { waitFor } from "../adapters/wait-for.js";
import type { Builder } from "../core/builder.js";
import { StorePlace } from "./store-place.js";
import type { DispatchSession, OpenSession, SessionSshCause } from "./store-session.js";

/** Slot sessions opening at once, per builder (see openSlot). */
const OPENING_AT_ONCE = 8;

/**
 * nixpool's connections to one builder, kept by the fleet across builds: a transfer session (queries, downloads)
 * opened first, then one session per job slot (uploads and builds), all long-lived. Any session
 * ending unexpectedly means the builder is lost: every session is closed and `onLost` says why.
 */
export class BuilderLink {
  readonly place: StorePlace;
  transfer: DispatchSession | undefined;
  private readonly slotSessions: (DispatchSession | undefined)[] = [];
  private readonly busy = new Set<number>();
  private readonly logTargets = new Map<number, (line: string) => void>();
  private ending = false;
  private onSlot: ((open: number) => void) | undefined;
  private readonly toOpen: number[] = [];
  private openingNow = 0;
  /** Ends sessions still connecting when the link is closed or killed. */
  private readonly stop = new AbortController();
  lostReason: string | undefined;
  /** What ssh said when the link was lost, if it said anything it knows. */
  lostCause: SessionSshCause | undefined;

  constructor(
    readonly builder: Builder,
    private readonly openSession: OpenSession,
    private readonly onLost: (link: BuilderLink, reason: string) => void,
  ) {
    this.place = new StorePlace(builder.name);
  }

  get name(): string {
    return this.builder.name;
  }

  /** Sessions open for building. */
  get openSlots(): number {
    return this.slotSessions.filter((s) => s !== undefined).length;
  }

  /** Opens the transfer session; rejects with the reason the builder cannot be used. */
  async connect(): Promise<void> {
    const s = await this.openSession({
      builder: this.builder,
      role: { kind: "transfer" },
      onStderrLine: () => undefined,
      onClose: (why, ssh) => this.lose(why, ssh),
      signal: this.stop.signal,
    });
    // The build ended (or failed to evaluate) while this session was opening.
    if (this.ending) {
      s.kill();
      throw new Error(this.lostReason ?? "the build ended");
    }
    this.transfer = s;
  }

  /** Opens one session per job slot in the background; `onSlot` follows each change of the open count. */
  openSlotSessions(onSlot: (open: number) => void): void {
    this.onSlot = onSlot;
    for (let i = 0; i < this.builder.maxJobs; i++) {
      this.slotSessions.push(undefined);
      this.openSlot(i);
    }
  }

  /**
   * Queues the opening of slot `i`. At most OPENING_AT_ONCE slot sessions (plus the transfer
   * session) are unauthenticated at a time: sshd's default `MaxStartups 10:30:100` drops
   * connections beyond 10, and a builder with 16 jobs was lost on every build.
   */
  private openSlot(i: number): void {
    this.toOpen.push(i);
    this.openNext();
  }

  private openNext(): void {
    while (this.openingNow < OPENING_AT_ONCE && this.toOpen.length > 0 && !this.ending) {
      const i = this.toOpen.shift() as number;
      this.openingNow++;
      this.startOpening(i);
    }
  }

  private startOpening(i: number): void {
    this.openSession({
      builder: this.builder,
      role: { kind: "slot", slot: i },
      onStderrLine: (line) => this.logTargets.get(i)?.(line),
      onClose: (why, ssh) => this.loseFromSlot(why, ssh),
      signal: this.stop.signal,
    })
      .then(
        (s) => {
          if (this.ending) {
            s.kill();
            return;
          }
          this.slotSessions[i] = s;
          this.busy.delete(i);
          this.onSlot?.(this.openSlots);
        },
        (e: unknown) => this.lose(e instanceof Error ? e.message : String(e)),
      )
      .finally(() => {
        this.openingNow--;
        this.openNext();
      });
  }

  /** A free, open slot session, lent until `releaseSlot`; its build log goes to `log`. */
  takeSlot(log: (line: string) => void): { index: number; session: DispatchSession } | undefined {
    for (let i = 0; i < this.slotSessions.length; i++) {
      const s = this.slotSessions[i];
      if (s && !this.busy.has(i)) {
        this.busy.add(i);
        this.logTargets.set(i, log);
        return { index: i, session: s };
      }
    }
    return undefined;
  }

  /** Frees a slot; its log keeps going to the last derivation (stderr may trail the result) until the next take. */
  releaseSlot(index: number): void {
    if (this.slotSessions[index]?.isClosed && !this.ending) {
      // Killed under a live builder (an input stream from a builder that died was cut): the slot
      // stays taken until a fresh session replaces it.
      this.slotSessions[index] = undefined;
      this.onSlot?.(this.openSlots);
      this.openSlot(index);
      return;
    }
    this.busy.delete(index);
  }

  /** Ends the session of a taken slot (its build was cancelled); the slot reopens once released. */
  killSlot(index: number): void {
    if (this.busy.has(index)) this.slotSessions[index]?.kill();
  }

  /** Resolves once the builder is declared lost, or after `ms`. */
  async lostWithin(ms: number): Promise<void> {
    await waitFor(() => this.lostReason !== undefined, { timeoutMs: ms });
  }

  /** Gives the builder up for a reason found outside its sessions (a query that failed). */
  fail(reason: string): void {
    this.lose(reason);
  }

  /**
   * Slot sessions ride on the transfer session's ssh connection: when that connection dies, the
   * transfer session knows why (silence, a refused key…) while a slot only sees ssh exit. A slot's
   * loss without ssh's words waits a moment for the transfer session to say it.
   */
  private loseFromSlot(reason: string, ssh?: SessionSshCause): void {
    if (this.ending) return;
    if (ssh || !this.transfer || this.transfer.isClosed) {
      this.lose(reason, ssh);
      return;
    }
    setTimeout(() => this.lose(reason, ssh), 1500).unref();
  }

  private lose(reason: string, ssh?: SessionSshCause): void {
    if (this.ending) return;
    this.lostReason = reason;
    this.lostCause = ssh;
    this.kill();
    this.onLost(this, reason);
  }

  /** Ends every session at once (Ctrl-C, builder lost): remote builds stop with their sessions. */
  kill(): void {
    this.ending = true;
    this.stop.abort();
    this.transfer?.kill();
    for (const s of this.slotSessions) s?.kill();
    this.place.forget();
  }

  /** Closes every session cleanly (end of the build). */
  async close(): Promise<void> {
    this.ending = true;
    const open = [this.transfer, ...this.slotSessions].filter((s): s is DispatchSession => s !== undefined);
    await Promise.allSettled(open.map((s) => s.close()));
    this.stop.abort();
  }
}
