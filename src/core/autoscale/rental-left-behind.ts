/**
 * A rental that failed and left its server behind (deleting it failed too): the autoscaler keeps
 * it counted and retries its deletion, as a failed release. Thrown by a provider's rent().
 */
export class RentalLeftBehind extends Error {
  constructor(
    readonly worker: string,
    readonly rentError: unknown,
    readonly deleteError: unknown,
  ) {
    super(`${message(rentError)}; deleting ${worker} failed too (${message(deleteError)})`);
    this.name = "RentalLeftBehind";
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
