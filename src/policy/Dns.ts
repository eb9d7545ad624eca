/**
 * DNS for policy checks, recorded. Every answer a check uses (records, or the error code such as
 * ENOTFOUND) is handed to the session's log as it arrives; a replay answers the same questions
 * from those records, so SPF and the rules that use DNS decide a recorded session again exactly
 * as they did, whatever the DNS says today. Pure: the live resolver is in DnsLive.ts.
 */
import type * as Event from "../log/Event.ts"

/** A question and its answer, as recorded (DnsAnswered without session and time). */
export interface Answer {
  readonly name: string
  readonly type: string
  /** What the resolver returned (strings, or TXT strings in chunks), when it answered. */
  readonly records?: ReadonlyArray<string | ReadonlyArray<string>> | undefined
  /** The resolver's error code (ENOTFOUND, ENODATA, ETIMEOUT...), when it did not. */
  readonly error?: string | undefined
}

/** `dns.promises.resolve`'s shape, which mailauth and rules call. */
export type Resolve = (name: string, type: string) => Promise<Array<string> | Array<Array<string>>>

const errorCode = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const code: unknown = Reflect.get(error, "code")
    if (typeof code === "string") return code
  }
  return "ESERVFAIL"
}

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
    const records = asRecords(await resolve(name, type))
    record({ name, type, records })
    return records
  } catch (error) {
    const answer = { name, type, error: errorCode(error) }
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
  return asRecords(found.records ?? [])
}

/** The recorded answers of a session's events. */
export const answersOf = (events: ReadonlyArray<Event.Event>): Array<Answer> =>
  events.flatMap((event) =>
    event._tag === "DnsAnswered"
      ? [{ name: event.name, type: event.type, records: event.records, error: event.error }]
      : []
  )
