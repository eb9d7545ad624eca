/**
 * What a failed system call (fs, dns, net) says about itself: Node's errors carry a `code`
 * ("ENOENT", "ETIMEOUT") and a message; anything else thrown is described as text. Pure.
 */

/** The error's `code`, when it has one. */
export const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  const code: unknown = Reflect.get(error, "code")
  return typeof code === "string" ? code : undefined
}

/** Whether the error says the file or directory does not exist. */
export const isMissing = (error: unknown): boolean => errorCode(error) === "ENOENT"

/** The error's message, or the thrown value as text. */
export const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))
