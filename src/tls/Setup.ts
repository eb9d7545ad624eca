/**
 * Everything a worker needs before it can serve TLS: the self-signed certificate when none is
 * configured, the ticket master secret shared by the workers, and the certificate store.
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Config from "../config/Config.ts"
import type * as Event from "../log/Event.ts"
import * as CertificateCheck from "./CertificateCheck.ts"
import * as CertStore from "./CertStore.ts"
import * as SelfSigned from "./SelfSigned.ts"
import * as TicketKeys from "./TicketKeys.ts"

/** Where the ticket master secret lives: in the state directory, shared by every worker. */
export const ticketMasterFile = (stateDirectory: string): string => Path.join(stateDirectory, "tls", "ticket-master")

export type SetupError = CertificateCheck.CertificateError | TicketKeys.TicketKeyError

export const prepare = (config: Config.ConfigShape): Effect.Effect<
  { readonly store: CertStore.CertStore; readonly events: ReadonlyArray<Event.Event> },
  SetupError
> =>
  Effect.gen(function*() {
    const { tls } = config
    const settings = tls.selfSignedDirectory === undefined
      ? tls.settings
      : { ...tls.settings, defaultCertificate: yield* SelfSigned.ensure(tls.selfSignedDirectory, config.hostname) }
    const masterFile = ticketMasterFile(config.stateDirectory)
    yield* Effect.tryPromise({
      try: () => Fs.mkdir(Path.dirname(masterFile), { recursive: true, mode: 0o700 }),
      catch: (cause) => new TicketKeys.TicketKeyError({ file: masterFile, reason: String(cause) })
    })
    const master = yield* TicketKeys.loadOrCreate(masterFile)
    return yield* CertStore.make(settings, { ticketMaster: master, now: Date.now })
  })
