/**
 * DKIM verification, ARC validation and DMARC evaluation (with SPF) of a whole message, at the data stage, by
 * mailauth through Postern's recorded DNS. The message streams in as it is received (nothing
 * is read back from the spool); the outcome is what rules see as `ctx.dkim`, `ctx.arc` and `ctx.dmarc` and
 * the Authentication-Results field (RFC 8601) delivered above the message.
 */
import { authenticate } from "mailauth"
import * as Event from "../log/Event.ts"
import { describe } from "../log/SystemError.ts"
import * as Headers from "../session/Headers.ts"
import * as Dns from "./Dns.ts"
import * as Streamed from "./Streamed.ts"

export type Outcome = Omit<Event.MessageAuthenticated, "_tag" | "session" | "at">

/** The outcome never rejects: a failure of the check is a temperror outcome. */
export type Verifier = Streamed.Streamed<Outcome>

// mailauth's results, narrowed to what the events can record.
const dkimResults = Event.DkimResults.value.fields.result.literals
const dmarcResults = Event.DmarcResult.fields.result.literals
const arcResults = Event.ArcResult.fields.result.literals

const oneOf = <A extends string>(values: ReadonlyArray<A>, value: string, otherwise: A): A =>
  values.find((v) => v === value) ?? otherwise

/** The Authentication-Results field of mailauth's headers (without the Received-SPF it also writes). */
const authenticationResults = (headers: string): string => {
  const fields = headers.split(/\r?\n(?=\S)/)
  return fields.filter((field) => /^Authentication-Results:/i.test(field)).join("\r\n").replace(/\r?\n/g, "\r\n").replace(/\r\n$/, "")
}

type ArcResult = Exclude<Awaited<ReturnType<typeof authenticate>>["arc"], false>

const text = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value.toLowerCase() : undefined)

/**
 * The ARC outcome. The sealer is the newest ARC-Seal's d=, the domain whose key vouches for that
 * set (the ARC-Message-Signature beside it is checked with a key of its own d=, which need not
 * be the same); it and what that set recorded are given only for a chain that passes.
 */
const arcOutcome = (arc: ArcResult): NonNullable<Outcome["arc"]> => {
  const result = oneOf(arcResults, arc.status.result, "permerror")
  const instance = arc.i === false ? 0 : arc.i
  if (result !== "pass") return { result, instance }
  const chain = arc.chain ?? []
  const sealer = text(chain[chain.length - 1]?.["arc-seal"]?.parsed?.["d"]?.value)
  const recorded: unknown = arc.authenticationResults
  const dmarc: unknown = typeof recorded === "object" && recorded !== null ? Reflect.get(recorded, "dmarc") : undefined
  const dmarcResult = typeof dmarc === "object" && dmarc !== null ? text(Reflect.get(dmarc, "result")) : undefined
  const header: unknown = typeof dmarc === "object" && dmarc !== null ? Reflect.get(dmarc, "header") : undefined
  const from = typeof header === "object" && header !== null ? text(Reflect.get(header, "from")) : undefined
  return {
    result,
    instance,
    ...(sealer === undefined ? {} : { sealer }),
    recorded: { ...(dmarcResult === undefined ? {} : { dmarc: dmarcResult }), ...(from === undefined ? {} : { from }) }
  }
}

/** Starts verifying a message that is about to stream in. */
export const start = (options: {
  readonly sender: string
  readonly ip: string
  readonly helo: string
  readonly hostname: string
  readonly resolve: Dns.Resolve
}): Verifier =>
  Streamed.start((input) =>
    authenticate(input, {
    sender: options.sender,
    ip: options.ip,
    helo: options.helo,
    mta: options.hostname,
    resolver: Dns.forMailauth(options.resolve),
    disableBimi: true
  }).then(
    (result): Outcome => ({
      // An unsigned message is no signature at all, not one without a domain.
      dkim: result.dkim.results.filter((r) => (r.signingDomain ?? "") !== "").map((r) => ({
        domain: r.signingDomain ?? "",
        selector: r.selector ?? "",
        result: oneOf(dkimResults, r.status.result, "permerror")
      })),
      ...(result.dmarc === false
        ? {}
        : {
          dmarc: {
            result: oneOf(dmarcResults, result.dmarc.status.result, "permerror"),
            domain: result.dmarc.domain,
            policy: result.dmarc.policy ?? "none"
          }
        }),
      ...(result.arc === false ? {} : { arc: arcOutcome(result.arc) }),
      header: authenticationResults(result.headers)
    }),
    (error: unknown): Outcome => ({
      dkim: [],
      header: `Authentication-Results: ${options.hostname}; dkim=temperror (${Headers.commentText(describe(error))})`
    })
  ))
