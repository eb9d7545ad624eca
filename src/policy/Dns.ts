/**
 * DNS for policy checks, recorded. Every answer a check uses (records, or the error code such as
 * ENOTFOUND) is handed to the session's log as it arrives; a replay answers the same questions
 * from those records, so SPF and the rules that use DNS decide a recorded session again exactly
 * as they did, whatever the DNS says today. Pure: the live resolver is in DnsLive.ts.
 */
import type * as Event from "../log/Event.ts"
import { errorCode } from "../log/SystemError.ts"

/** A question and its answer, as recorded (DnsAnswered without session and time). */
export interface Answer {
  readonly name: string
  readonly type: string
  /** What the resolver returned (strings, or TXT strings in chunks), when it answered. */
  readonly records?: ReadonlyArray<string | ReadonlyArray<string>> | undefined
  /** The resolver's error code (ENOTFOUND, ENODATA, ETIMEOUT...), when it did not. */
  readonly error?: string | undefined
}

/**
 * `dns.promises.resolve`'s shape, which mailauth and rules call: strings for A and AAAA, string
 * chunks for TXT, `{ exchange, priority }` for MX, as Node gives them.
 */
export type Resolve = (name: string, type: string) => Promise<unknown>



const failure = (answer: Answer): Error => Object.assign(new Error(`${answer.error} ${answer.type} ${answer.name}`), { code: answer.error })

/** A resolver's answer as recordable strings (records of other shapes become their JSON). */
export const asRecords = (value: unknown): Array<string> | Array<Array<string>> =>
  Array.isArray(value)
    ? value.every((item) => typeof item === "string")
      ? value.map(String)
      : value.map((item) => (Array.isArray(item) ? item.map(String) : [typeof item === "object" ? JSON.stringify(item) : String(item)]))
    : []

/** `resolve`, with every answer (or error) also given to `record`. */
export const recording = (resolve: Resolve, record: (answer: Answer) => void): Resolve => async (name, type) => {
  try {
    // The caller gets the answer as the resolver gave it (MX records are objects); the log a copy.
    const answer = await resolve(name, type)
    record({ name, type, records: asRecords(answer) })
    return answer
  } catch (error) {
    const answer = { name, type, error: errorCode(error) ?? "ESERVFAIL" }
    record(answer)
    throw failure(answer)
  }
}

/**
 * Answers from recorded answers only: the first recorded answer to the same question. A question
 * the session never asked fails as SERVFAIL (a temporary error), never a made-up answer.
 */
export const replaying = (answers: ReadonlyArray<Answer>): Resolve => async (name, type) => {
  const found = answers.find((a) => a.name.toLowerCase() === name.toLowerCase() && a.type === type)
  if (found === undefined) throw failure({ name, type, error: "ESERVFAIL" })
  if (found.error !== undefined) throw failure(found)
  const records = found.records ?? []
  // MX records were logged as their JSON: give them back as the objects the resolver gave.
  return type === "MX" ? records.map((r): unknown => JSON.parse(typeof r === "string" ? r : (r[0] ?? "null"))) : records
}

/**
 * The resolver as mailauth's typing wants it. mailauth calls it like `dns.promises.resolve` and
 * reads MX answers as `{ exchange, priority }` objects (lib/spf/spf-verify.js), which its
 * declared type (strings only) leaves out: the answers pass through unchanged.
 */
export const forMailauth = (resolve: Resolve) =>
  resolve as (name: string, type: string) => Promise<Array<string> | Array<Array<string>>>

/** The recorded answers of a session's events. */
export const answersOf = (events: ReadonlyArray<Event.Event>): Array<Answer> =>
  events.flatMap((event) =>
    event._tag === "DnsAnswered"
      ? [{ name: event.name, type: event.type, records: event.records, error: event.error }]
      : []
  )
