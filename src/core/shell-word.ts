/** Quotes one word for a POSIX shell (ssh hands a remote command to the login shell as one string). */
export function quoteShellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
