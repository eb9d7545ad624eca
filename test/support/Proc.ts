/** Reading /proc/…/stat. */
import * as Fs from "node:fs"

export interface Stat {
  /** The command name (what `comm` holds). */
  readonly name: string
  /** The fields after the name: [0] is the state (field 3), [1] the parent pid, [16] nice. */
  readonly fields: ReadonlyArray<string>
}

/** The stat file at `path`, or undefined when the process or thread has ended. */
export const readStat = (path: string): Stat | undefined => {
  let stat: string
  try {
    stat = Fs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
  // The name is in parentheses and may itself hold spaces or parentheses.
  const close = stat.lastIndexOf(")")
  return { name: stat.slice(stat.indexOf("(") + 1, close), fields: stat.slice(close + 2).split(" ") }
}
