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
