/**
 * Varied machines files for import/render round trips: everything Nix 2.8 accepts in a
 * machines file. `${DIR}` stands for a directory the test owns (for @include targets).
 */
export interface CorpusCase {
  name: string;
  text: string;
  /** Extra files, relative to DIR, that the case includes. */
  files?: Record<string, string>;
}

const KEY_ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";
const KEY_ED2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGfi0jCPC0dk6KAp5eb0Jb3p5Bm4q/2uIkp3aFTd8wp";
const b64 = (s: string) => Buffer.from(s).toString("base64");

export const MACHINES_CORPUS: CorpusCase[] = [
  { name: "bare hosts", text: "host1\nhost2 x86_64-linux\n" },
  {
    name: "all eight fields",
    text: `builder.example.com x86_64-linux,i686-linux /root/.ssh/id_builder 8 4 kvm,big-parallel,nixos-test kvm ${b64(KEY_ED)}\n`,
  },
  {
    name: "semicolons and comments",
    text: "# my builders\na x86_64-linux - 2;b - - 3 # fast one\n\n#\nc;d;;e # c ; d\n",
  },
  { name: "scheme forms", text: "ssh://u@h1 ; ssh-ng://h2 ; root@h3 ; h4 ; ssh-ng://nix@h5.example.org\n" },
  { name: "dashes everywhere", text: "h - - - - - - -\nh2 - /k - 5\nh3 -\n" },
  {
    name: "features",
    text: "h - - 2 1 a b\nh2 - - 1 1 big,kvm,big kvm\nh3 - - 1 1 - benchmark\nh4 - - 1 1 x,,y, -\n",
  },
  {
    name: "includes",
    text: "first\n@${DIR}/more.machines\n@${DIR}/missing.machines\n@ ${DIR}/sub/also.machines\nlast\n",
    files: {
      "more.machines": "m1 aarch64-linux\n@${DIR}/sub/deeper.machines\n",
      "sub/deeper.machines": "m2 - - 3\n",
      "sub/also.machines": "# nothing but a comment\nm3;m4\n",
    },
  },
  { name: "crlf line ends", text: "a x86_64-linux - 2\r\nb\r\nc - - - 3\r\n" },
  { name: "numbers", text: "a - - +3 007\nb - - 00012 0\nc - - 4294967295 +1\n" },
  { name: "extra fields", text: `a - - - - - - ${b64(KEY_ED2)} extra junk\n` },
  {
    name: "ip addresses and duplicate hosts",
    text: "10.0.0.1\nroot@10.0.0.1\nssh-ng://10.0.0.1 - - 4\n10.0.0.2\n",
  },
  { name: "tabs", text: "a\tx86_64-linux\t-\t2\t\t1\n\tb\n" },
  {
    name: "system lists",
    text: "a x86_64-linux,,i686-linux,x86_64-linux\nb aarch64-linux,armv7l-linux - 2\n",
  },
  { name: "a lone '-' feature", text: "h - - 1 1 -,- -,-\n" },
  {
    name: "host keys with comments and newlines",
    text: `a - - - - - - ${b64(`${KEY_ED} root@a\n`)}\nb - - - - - - ${b64(KEY_ED2).replace(/=+$/, "")}\n`,
  },
  {
    name: "unsupported entries between good ones",
    text: "good1\nlocal\ndaemon\nssh://h:2222\nssh-ng://h?remote-store=/x\nzero - - 0\ngood2 - - 2\n/some/store\n",
  },
  { name: "same first label", text: "b1.example.com\nb1.example.org - - 2\nb1\n" },
];

/** A small deterministic PRNG (mulberry32), so every run generates the same files. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RandomMachinesOptions {
  /** Also produce entries Nix 2.8 refuses (bad numbers, bad base64, whitespace-only entries). */
  invalid: boolean;
}

/**
 * A random machines file built from the pieces Nix 2.8 accepts (and, optionally, refuses):
 * separators, comments, '-' and missing fields, number spellings, feature lists, host keys.
 */
export function randomMachinesFile(seed: number, options: RandomMachinesOptions): string {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const bad = (good: readonly string[], worse: readonly string[]) =>
    options.invalid && rnd() < 0.08 ? pick(worse) : pick(good);
  const uris = [
    "host1",
    "b2.example.com",
    "root@h3",
    "ssh://a.example.org",
    "ssh-ng://nix@10.0.0.9",
    "ssh-ng://builder",
    "local",
    "ssh://h:2222",
  ];
  const fields = (): string[] => [
    bad(uris, ["-"]),
    pick([
      "-",
      "x86_64-linux",
      "x86_64-linux,i686-linux",
      "aarch64-linux,,armv7l-linux",
      "i686-linux,x86_64-linux",
    ]),
    pick(["-", "/root/.ssh/id", "/k"]),
    bad(["-", "1", "4", "+2", "007", "16", "0"], ["-1", "x", "4294967296", "1.5"]),
    bad(["-", "1", "3", "0", "+1", "010"], ["-2", "fast"]),
    pick(["-", "kvm", "big-parallel,kvm", "b,a,a", ",x,", "nixos-test,benchmark"]),
    pick(["-", "kvm", "big-parallel", "-,-"]),
    bad(
      ["-", Buffer.from(KEY_ED).toString("base64"), Buffer.from(`${KEY_ED2} c\n`).toString("base64"), "-"],
      ["!!!", "a.b"],
    ),
    ...(rnd() < 0.1 ? ["extra"] : []),
  ];
  const entry = () => {
    const f = fields();
    const n = 1 + Math.floor(rnd() * f.length);
    const sep = () => pick([" ", " ", "\t", "  "]);
    return f.slice(0, n).reduce((acc, x) => `${acc}${sep()}${x}`);
  };
  const lines: string[] = [];
  const count = 1 + Math.floor(rnd() * 6);
  for (let i = 0; i < count; i++) {
    const r = rnd();
    if (r < 0.1) lines.push("# a comment");
    else if (r < 0.15) lines.push("");
    else if (r < 0.2 && options.invalid) lines.push(pick(["  # indented", "   ", "\t"]));
    else {
      let line = entry();
      if (rnd() < 0.25) line = `${line} ;${pick(["", " "])}${entry()}`;
      if (rnd() < 0.2) line = `${line} # trailing ; comment`;
      if (rnd() < 0.15) line = `${pick([" ", "\t"])}${line}`;
      lines.push(line);
    }
  }
  const eol = rnd() < 0.15 ? "\r\n" : "\n";
  // With CRLF a blank line is "\r", a whitespace-only entry Nix refuses.
  const kept = eol === "\r\n" && !options.invalid ? lines.filter((l) => l !== "") : lines;
  return kept.join(eol) + eol;
}
