/**
 * The client's side of an AUTH exchange (RFC 4954) as data: decoding what it sends for PLAIN
 * (RFC 4616) and LOGIN. The machine never sees credentials; the session decodes each response
 * here, tells the machine only what it meant (`answer`, `cancel`, `malformed`), and keeps the
 * name and password to check them. Pure.
 */
import * as Event from "../log/Event.ts"

export type Mechanism = Event.AuthMechanism

/** The mechanisms offered, as the event schema names them. */
export const mechanisms: ReadonlyArray<Mechanism> = Event.AuthMechanism.literals

export const isMechanism = (name: string): name is Mechanism => mechanisms.some((mechanism) => mechanism === name)

/** Where an exchange is: PLAIN takes one response; LOGIN a name, then a password. */
export type Step = "plain" | "login-username" | "login-password"

/** The first step of a mechanism. */
export const firstStep = (mechanism: Mechanism): Step => (mechanism === "PLAIN" ? "plain" : "login-username")

/** The 334 challenge that asks for `step`'s response (base64 of "Username:" and "Password:" for LOGIN). */
export const challenge = (step: Step): string =>
  step === "plain" ? "" : step === "login-username" ? "VXNlcm5hbWU6" : "UGFzc3dvcmQ6"

export type Decoded =
  | { readonly outcome: "cancel" }
  | { readonly outcome: "malformed" }
  /** PLAIN: the whole credentials; LOGIN: the name, or the password. */
  | { readonly outcome: "answer"; readonly user?: string; readonly password?: string }

// RFC 4648 base64; the padding may be left out (some clients do), nothing else is forgiven.
const base64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/
const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Base64 (RFC 4648) to UTF-8 text; undefined for anything else (no spaces, no invalid UTF-8). */
export const decodeBase64Text = (text: string): string | undefined => {
  if (!base64.test(text)) return undefined
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  try {
    return utf8.decode(bytes)
  } catch {
    return undefined
  }
}

/**
 * One client response. "*" cancels (RFC 4954 4); "=" is an empty response. PLAIN wants
 * `[authzid] NUL authcid NUL passwd` with a non-empty authcid and password, and an authzid
 * that is absent or the authcid itself (acting as another user is not offered).
 */
export const decode = (step: Step, response: string): Decoded => {
  if (response === "*") return { outcome: "cancel" }
  const text = response === "=" ? "" : decodeBase64Text(response)
  if (text === undefined) return { outcome: "malformed" }
  switch (step) {
    case "plain": {
      const parts = text.split("\u0000")
      if (parts.length !== 3) return { outcome: "malformed" }
      const [authzid = "", user = "", password = ""] = parts
      if (user === "" || password === "" || (authzid !== "" && authzid !== user)) return { outcome: "malformed" }
      return { outcome: "answer", user, password }
    }
    case "login-username":
      return text === "" || text.includes("\u0000") ? { outcome: "malformed" } : { outcome: "answer", user: text }
    case "login-password":
      return text === "" ? { outcome: "malformed" } : { outcome: "answer", password: text }
  }
}
