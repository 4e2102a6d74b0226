/** Builds SSH wire-format key blobs for tests, without ssh-keygen. */
function wire(...parts: Buffer[]): Buffer {
  return Buffer.concat(
    parts.flatMap((p) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(p.length);
      return [len, p];
    }),
  );
}

export function ed25519Line(seed: number, comment = ""): string {
  const blob = wire(Buffer.from("ssh-ed25519"), Buffer.alloc(32, seed)).toString("base64");
  return comment ? `ssh-ed25519 ${blob} ${comment}` : `ssh-ed25519 ${blob}`;
}

export function rsaLine(bits: number): string {
  const n = Buffer.alloc(bits / 8 + 1, 0xab);
  n[0] = 0; // mpint sign byte: the next byte has its high bit set
  return `ssh-rsa ${wire(Buffer.from("ssh-rsa"), Buffer.from([1, 0, 1]), n).toString("base64")}`;
}

/** A blob that claims to be one type while the line says another. */
export function mismatchedLine(): string {
  const blob = wire(Buffer.from("ssh-rsa"), Buffer.alloc(32, 1)).toString("base64");
  return `ssh-ed25519 ${blob}`;
}
