/**
 * SPF (RFC 7208) for the mail stage, with mailauth doing the evaluation through Postern's
 * recorded DNS (Dns.ts). The outcome is what rules see as `ctx.spf` and what the Received-SPF
 * header says.
 */
import { spf as mailauthSpf } from "mailauth"
import type * as Event from "../log/Event.ts"
import * as Dns from "./Dns.ts"
import { describe } from "../log/SystemError.ts"
import * as Headers from "../session/Headers.ts"

export type Result = Event.SpfChecked["result"]

export interface Outcome {
  readonly result: Result
  readonly domain: string
  readonly comment: string | undefined
  /** The Received-SPF header field, one folded line (without its final CRLF). */
  readonly header: string
}

const results: ReadonlyArray<Result> = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]

const asResult = (value: string): Result => results.find((r) => r === value) ?? (value === "temperr" ? "temperror" : "permerror")

/**
 * Whether a HELO name can be checked (RFC 7208 2.3): a domain name of two labels or more, not an
 * address literal; other HELO names give no result (ctx.spfHelo undefined).
 */
export const isCheckableHelo = (helo: string): boolean =>
  /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}\.?$/.test(helo) && !/^[\d.]+$/.test(helo)

/**
 * Checks the MAIL FROM identity (the HELO identity for the null sender, RFC 7208 2.4) of a
 * client. Never rejects: a failure of the evaluation itself is `temperror`.
 */
export const check = async (options: {
  readonly sender: string
  readonly ip: string
  readonly helo: string
  readonly hostname: string
  readonly resolve: Dns.Resolve
  readonly timeout: number
}): Promise<Outcome> => {
  try {
    const outcome = await mailauthSpf({
      sender: options.sender,
      ip: options.ip,
      helo: options.helo,
      mta: options.hostname,
      resolver: Dns.forMailauth(options.resolve),
      maxElapsedTime: options.timeout
    })
    return {
      result: asResult(outcome.status.result),
      domain: outcome.domain,
      comment: outcome.status.comment,
      header: outcome.header.replace(/\r?\n$/, "")
    }
  } catch (error) {
    const comment = describe(error)
    return { result: "temperror", domain: "", comment, header: `Received-SPF: temperror (${Headers.commentText(comment)})` }
  }
}
