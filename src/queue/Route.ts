/**
 * Where a recipient's copy goes, by the local domains: one answer for delivery, for releasing
 * a quarantined copy, and for replaying the delivery stage's decisions. Pure.
 */
import type * as Event from "../log/Event.ts"

/** Where a recipient's copy goes. */
export type Route =
  | { readonly _tag: "Maildir"; readonly domain: string; readonly user: string }
  | { readonly _tag: "Discard" }
  /** Not a local domain: for outbound delivery. */
  | { readonly _tag: "Remote"; readonly domain: string }
  /** Cannot be delivered, ever. */
  | { readonly _tag: "Rejected"; readonly reason: string }

/** Routes `recipient` (`local@domain`) by the local domains; domains match case-insensitively. */
export const route = (localDomains: ReadonlyArray<Event.LocalDomain>, recipient: string): Route => {
  const at = recipient.lastIndexOf("@")
  if (at <= 0 || at === recipient.length - 1) return { _tag: "Rejected", reason: `invalid recipient ${recipient}` }
  const local = recipient.slice(0, at)
  const domain = recipient.slice(at + 1).toLowerCase()
  const config = localDomains.find((d) => d.domain.toLowerCase() === domain)
  if (config === undefined) return { _tag: "Remote", domain }
  const user = local.toLowerCase()
  if (config.users !== "*" && user !== "postmaster" && !config.users.includes(user)) {
    return { _tag: "Rejected", reason: `5.1.1 no such user ${local} in ${domain}` }
  }
  return config.transport === "discard" ? { _tag: "Discard" } : { _tag: "Maildir", domain, user }
}
