/** What every `postern` subcommand shares. */
import { Effect } from "effect"

/** Sets the exit status the process ends with (after its output is written), without ending it. */
export const setExitCode = (code: number): Effect.Effect<void> => Effect.sync(() => void (process.exitCode = code))
