/**
 * One member of a replica group (docs/replication.md): a service's endpoint served by members on
 * several nodes of a DC. Members stand in the group's election in the store; the leader is the
 * primary: it binds the group's endpoint here at its fencing epoch, takes the entry in the directory
 * over (fenced, so a deposed primary cannot), and runs the request loop. Each update goes, in the
 * primary's order, to every synchronised backup before the answer goes out (passive: the primary
 * applies it first; active: all members apply it at once and the answer waits for `quorum` of them).
 * A backup that does not answer is dropped from the synchronised set by a fenced write before
 * anyone is answered, so every member that can be elected holds every acknowledged update. A
 * member that is not synchronised joins: it sends the primary its state's chunk hashes, receives
 * the chunks that differ and, interleaved with them, every update made meanwhile.
 */
import { createHash } from 'node:crypto';
import type { Directory } from '../../cluster/directory.js';
import { Election, type Leadership } from '../../cluster/election.js';
import type { CoordinationStore, StoreValue } from '../../cluster/store.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Kernel } from '../../kernel/kernel.js';
import type { Process } from '../../kernel/process.js';
import { silentLogger, type Logger } from '../../runtime/logger.js';
import { toWireError } from '../../transport/proc-protocol.js';
import { chunkSizeFor, parseMemberMsg, RG_APPLY, RG_CHUNK, RG_HASH_BYTES, RG_JOIN, RG_MAX_INLINE, RG_PRIMARY, RG_SYNCED, type DataMsg, type JoinMsg, type MemberMsg } from './replica-messages.js';
import type { ReplicaAnswer, ReplicatedService } from './replicated-service.js';

export type ReplicaMode = 'passive' | 'active';
export type ReplicaRole = 'starting' | 'joining' | 'backup' | 'primary' | 'stopped';

export interface ReplicaMemberOptions {
  readonly nodeId: number;
  readonly dcid: number;
  /** The group's endpoint slot. */
  readonly slot: number;
  readonly name: string;
  readonly mode: ReplicaMode;
  /** Active mode: members (the primary included) that applied an update before it is answered. */
  readonly quorum?: number;
  /** TTL of a member's candidacy: how soon a dead primary is replaced. */
  readonly leaseMs: number;
  /** How long senders park for the next primary (EndpointRecord.failoverMs). */
  readonly failoverMs: number;
  /** How long the primary waits for a backup's acknowledgement before it drops it. */
  readonly ackTimeoutMs?: number;
  readonly service: ReplicatedService;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly store: CoordinationStore;
  /** Key prefix of the layout (default '/dvs'). */
  readonly root?: string;
  /** The system slot of this member's own endpoint (where the primary reaches it). */
  readonly memberSlot: number;
  /** Binds an endpoint of this node (claimed in the directory). */
  readonly bind: (dcid: number, opts: { slot?: number; name: string }) => Promise<Process>;
  readonly logger?: Logger;
}

/** The group's record in the store: its endpoint and who is synchronised (written fenced by the primary). */
export interface GroupRecord {
  readonly endpoint: Endpoint;
  readonly epoch: number;
  readonly mode: ReplicaMode;
  readonly synced: readonly number[];
}

export interface ReplicaStatus {
  readonly role: ReplicaRole;
  readonly epoch: number;
  readonly seq: number;
  readonly synced: boolean;
  /** The primary's backups, when primary. */
  readonly backups: readonly { readonly node: number; readonly state: 'synced' | 'syncing' }[];
}

interface Target {
  readonly node: number;
  readonly member: Endpoint;
  state: 'synced' | 'syncing';
  /** While syncing: the joiner's chunk hashes, and the next chunk to compare. */
  sync?: { readonly chunk: number; readonly hashes: Uint8Array; next: number };
}

interface Candidate {
  readonly key: string;
  readonly node: number;
  readonly member: Endpoint;
}

const DEFAULT_ACK_TIMEOUT_MS = 3000;
const SYNC_TIMEOUT_MS = 120_000;
/** State chunks sent between two looks at the request queue while a member joins. */
const CHUNKS_PER_TURN = 8;
const RETRY_MS = 300;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref?.());

function hashOf(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, RG_HASH_BYTES);
}

function okAnswer(fields: Record<string, Payload>): ReplicaAnswer {
  return { type: 0, payload: { ok: true, ...fields } };
}

function errorAnswer(err: unknown): ReplicaAnswer {
  const error = toWireError(err);
  return { type: error.errno, payload: { ok: false, error } as unknown as Payload };
}

export function groupRecordKey(root: string, dcid: number, slot: number): string {
  return `${root}/groups/${dcid}/${slot}`;
}

export function electionName(dcid: number, slot: number): string {
  return `rg-${dcid}-${slot}`;
}

export function parseGroupRecord(v: StoreValue | undefined): GroupRecord | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.endpoint !== 'number' || typeof r.epoch !== 'number' || !Array.isArray(r.synced)) return undefined;
  return { endpoint: r.endpoint, epoch: r.epoch, mode: r.mode === 'active' ? 'active' : 'passive', synced: r.synced.filter((n): n is number => typeof n === 'number') };
}

export class ReplicaMember {
  private role: ReplicaRole = 'starting';
  private knownEpoch = 0;
  private seq = 0;
  private synced = false;
  private joining = false;
  private syncedWaiter: (() => void) | undefined;
  private member: Process | undefined;
  private caller: Process | undefined;
  private group: Process | undefined;
  private leadership: Leadership | undefined;
  private targets: Target[] = [];
  private joins: { readonly msg: JoinMsg; readonly member: Endpoint }[] = [];
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly election: Election;
  private readonly root: string;
  private readonly log: Logger;
  private done: Promise<void> | undefined;

  constructor(private readonly opts: ReplicaMemberOptions) {
    this.root = opts.root ?? '/dvs';
    this.election = new Election(opts.store, electionName(opts.dcid, opts.slot), { root: this.root });
    this.log = opts.logger ?? silentLogger;
  }

  status(): ReplicaStatus {
    return { role: this.role, epoch: this.knownEpoch, seq: this.seq, synced: this.synced, backups: this.targets.map((t) => ({ node: t.node, state: t.state })) };
  }

  /** The member's own endpoint (where the primary sends it updates). */
  get memberEndpoint(): Endpoint | undefined {
    return this.member?.endpoint;
  }

  async start(): Promise<void> {
    await this.opts.service.open();
    this.member = await this.opts.bind(this.opts.dcid, { slot: this.opts.memberSlot, name: `${this.opts.name}~${this.opts.nodeId}`.slice(0, 32) });
    // Joins are called from an endpoint of their own: the member endpoint keeps receiving meanwhile.
    this.caller = await this.opts.bind(this.opts.dcid, { name: `${this.opts.name}^${this.opts.nodeId}`.slice(0, 32) });
    void this.memberLoop(this.member);
    this.done = this.roleLoop();
  }

  /** Leaves the group: a primary resigns first, so a backup takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    const l = this.leadership;
    if (l !== undefined && !l.over) await l.resign().catch(() => undefined);
    this.wakeGroup();
    await this.done?.catch(() => undefined);
    await this.opts.service.flush?.().catch(() => undefined);
    for (const p of [this.group, this.member, this.caller]) if (p?.bound === true) await p.unbind().catch(() => undefined);
    await this.opts.service.close().catch(() => undefined);
    this.role = 'stopped';
  }

  // ---------------------------------------------------------------- the role: join, stand, serve

  private async roleLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        const record = await this.readRecord();
        const leader = await this.election.leader();
        const leaderNode = leader === undefined ? undefined : this.candidateOf(leader.key, leader.value)?.node;
        if (leader !== undefined && leaderNode !== this.opts.nodeId && !this.synced) {
          const c = this.candidateOf(leader.key, leader.value);
          if (c === undefined) throw new DvsError('EDVSIO', `malformed candidate ${leader.key}`);
          await this.join(c);
        } else if (leader === undefined && !this.eligible(record)) {
          // Only a synchronised member may lead; wait for one to stand.
          this.role = 'joining';
          await sleep(RETRY_MS);
          continue;
        }
        this.role = this.synced ? 'backup' : this.role;
        const l = await this.election.campaign({ node: this.opts.nodeId, member: this.requireMember().endpoint }, { ttlMs: this.opts.leaseMs, signal: this.abort.signal });
        if (this.stopped) {
          await l.resign().catch(() => undefined);
          return;
        }
        const now = await this.readRecord();
        if (!this.eligible(now)) {
          // Elected while not synchronised (all who were are gone, or a race at first start): step aside.
          await l.resign().catch(() => undefined);
          this.synced = false;
          await sleep(RETRY_MS);
          continue;
        }
        failures = 0;
        await this.serveAsPrimary(l, now);
      } catch (err) {
        if (this.stopped) return;
        // Dropped from the group, or the primary went: compare again before standing.
        this.synced = false;
        failures++;
        this.log.warn({ err: (err as Error).message, stack: (err as Error).stack, failures }, 'replica member: retrying');
        await sleep(Math.min(5000, RETRY_MS * 2 ** Math.min(failures, 4)));
      }
    }
  }

  /**
   * Whether this member may lead: it is in the synchronised set (the primary drops a member from it,
   * by a fenced write, before it answers any update that member missed), or the group never had one.
   */
  private eligible(record: GroupRecord | undefined): boolean {
    return record === undefined || record.synced.length === 0 || record.synced.includes(this.opts.nodeId);
  }

  private async readRecord(): Promise<GroupRecord | undefined> {
    return parseGroupRecord((await this.opts.store.get(groupRecordKey(this.root, this.opts.dcid, this.opts.slot)))?.value);
  }

  private candidateOf(key: string, v: StoreValue): Candidate | undefined {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return undefined;
    const r = v as Record<string, unknown>;
    return typeof r.node === 'number' && typeof r.member === 'number' ? { key, node: r.node, member: r.member } : undefined;
  }

  private async candidates(): Promise<Candidate[]> {
    const r = await this.opts.store.getPrefix(this.election.prefix);
    return r.entries.map((kv) => this.candidateOf(kv.key, kv.value)).filter((c): c is Candidate => c !== undefined);
  }

  private requireMember(): Process {
    if (this.member === undefined) throw new DvsError('EDVSSHUTDOWN', 'the replica member is not started');
    return this.member;
  }

  /** Joins through the primary `leader`: sends its chunk hashes, then waits for RG_SYNCED. */
  private async join(leader: Candidate): Promise<void> {
    this.role = 'joining';
    this.synced = false;
    this.joining = true;
    const svc = this.opts.service;
    const size = await svc.stateSize();
    const chunk = chunkSizeFor(size);
    const count = Math.ceil(size / chunk);
    const hashes = Buffer.allocUnsafe(count * RG_HASH_BYTES);
    for (let i = 0; i < count; i++) hashOf(await svc.readState(i * chunk, Math.min(chunk, size - i * chunk))).copy(hashes, i * RG_HASH_BYTES);
    const synced = new Promise<void>((resolve) => {
      this.syncedWaiter = resolve;
    });
    const caller = this.caller;
    if (caller === undefined) throw new DvsError('EDVSSHUTDOWN', 'the replica member is not started');
    const r = await caller.sendrec(leader.member, { type: RG_JOIN, payload: { node: this.opts.nodeId, member: this.requireMember().endpoint, size, chunk, hashes } }, { timeoutMs: this.opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
    if (r.type !== 0) throw new DvsError('EDVSGRPLEADER', `node ${leader.node} did not take the join (${r.type})`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        synced,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new DvsError('EDVSTIMEDOUT', 'the join did not finish in time')), SYNC_TIMEOUT_MS);
          // A member stopped while it joins stops waiting at once.
          this.abort.signal.addEventListener('abort', () => reject(new DvsError('EDVSINTR', 'the member stopped while joining')), { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.syncedWaiter = undefined;
      this.joining = false;
    }
    this.role = 'backup';
    this.log.info({ seq: this.seq, epoch: this.knownEpoch }, 'replica member synchronised');
  }

  // ---------------------------------------------------------------- as primary

  private async serveAsPrimary(l: Leadership, record: GroupRecord | undefined): Promise<void> {
    const { kernel, directory, dcid, slot, name } = this.opts;
    this.leadership = l;
    this.knownEpoch = Math.max(this.knownEpoch, l.epoch);
    const endpoint = record?.endpoint ?? (await directory.claimEndpoint(dcid, this.opts.nodeId, { slot, name }));
    let lost = false;
    const offLost = l.on('lost', () => {
      lost = true;
      this.wakeGroup();
    });
    try {
      const g = kernel.absorb({ dcid, endpoint, epoch: l.epoch, from: this.opts.nodeId, queued: [], notifies: [], owed: [], wokenUp: false }, { name });
      this.group = g;
      await directory.restoreEndpoint(dcid, endpoint, this.opts.nodeId, name, l.epoch, { fence: [l.fence()], failoverMs: this.opts.failoverMs, replace: true });
      this.role = 'primary';
      this.synced = true;
      await this.gatherBackups(l, g);
      await this.writeRecord(l, endpoint);
      this.log.info({ epoch: l.epoch, endpoint, backups: this.targets.map((t) => t.node) }, 'replica group primary serving');
      while (!lost && !l.over && !this.stopped) {
        const syncing = this.targets.some((t) => t.state === 'syncing') || this.joins.length > 0;
        if (syncing) await this.syncTurn(l, g, endpoint);
        let m: Message;
        try {
          m = await g.receiveRequest(syncing ? { timeoutMs: 1 } : {});
        } catch (err) {
          if (isDvsError(err, 'EDVSWOKENUP') || isDvsError(err, 'EDVSTIMEDOUT')) continue;
          if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) break;
          throw err;
        }
        await this.serveOne(l, g, m, endpoint);
      }
    } finally {
      offLost();
      this.leadership = undefined;
      this.targets = [];
      this.joins = [];
      if (!l.over) await l.resign().catch(() => undefined);
      if (this.group?.bound === true) await this.group.unbind().catch(() => undefined);
      this.group = undefined;
      // Updates applied here may not have reached anyone: rejoin and compare before leading again.
      this.synced = false;
      this.role = this.stopped ? 'stopped' : 'joining';
      if (!this.stopped) this.log.warn({ epoch: l.epoch }, 'replica group primary stepped down');
    }
  }

  private wakeGroup(): void {
    const g = this.group;
    if (g?.bound === true) {
      try {
        this.opts.kernel.wakeup(this.opts.dcid, g.endpoint);
      } catch {
        // unbound meanwhile
      }
    }
  }

  /** Announces this epoch to every synchronised candidate; those that do not answer are dropped. */
  private async gatherBackups(l: Leadership, g: Process): Promise<void> {
    const record = await this.readRecord();
    const synced = new Set(record?.synced ?? []);
    for (const c of await this.candidates()) {
      if (c.node === this.opts.nodeId) continue;
      try {
        const r = await g.sendrec(c.member, { type: RG_PRIMARY, payload: { epoch: l.epoch, group: g.endpoint, seq: this.seq } }, { timeoutMs: this.opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
        const p = r.payload as Record<string, unknown> | null;
        if (r.type === 0 && p?.synced === true && p.seq === this.seq && (synced.has(c.node) || synced.size === 0)) this.targets.push({ node: c.node, member: c.member, state: 'synced' });
        else await this.dropCandidate(l, c.key);
      } catch {
        await this.dropCandidate(l, c.key);
      }
    }
  }

  private async dropCandidate(l: Leadership, key: string): Promise<void> {
    const r = await l.fencedTxn({ compare: [], success: [{ op: 'delete', key }] });
    if (!r.succeeded) throw new DvsError('EDVSGRPLEADER', 'no longer the primary');
  }

  private async writeRecord(l: Leadership, endpoint: Endpoint): Promise<void> {
    const value: GroupRecord = { endpoint, epoch: l.epoch, mode: this.opts.mode, synced: [this.opts.nodeId, ...this.targets.filter((t) => t.state === 'synced').map((t) => t.node)] };
    const r = await l.fencedTxn({ compare: [], success: [{ op: 'put', key: groupRecordKey(this.root, this.opts.dcid, this.opts.slot), value: value as unknown as StoreValue }] });
    if (!r.succeeded) throw new DvsError('EDVSGRPLEADER', 'no longer the primary');
  }

  private async serveOne(l: Leadership, g: Process, m: Message, endpoint: Endpoint): Promise<void> {
    const svc = this.opts.service;
    let answer: ReplicaAnswer;
    try {
      const p = await svc.prepare(g, m);
      if (p.update === undefined) answer = p.answer;
      else {
        const seq = this.seq + 1;
        answer = await this.replicate(l, g, endpoint, p.update, seq, p.answer, (a) => this.answer(g, m, a));
        if (answer === undefined) return;
      }
    } catch (err) {
      if (isDvsError(err, 'EDVSGRPLEADER')) throw err;
      answer = errorAnswer(err);
    }
    await this.answer(g, m, answer);
  }

  /**
   * Applies `update` at every member in order. Passive: here first, then each backup. Active: here
   * and at the backups together, answering (through `early`) once `quorum` applied it. Returns the
   * answer still to send, or undefined when `early` sent it.
   */
  private async replicate(l: Leadership, g: Process, endpoint: Endpoint, update: Uint8Array, seq: number, prepared: ReplicaAnswer, early: (a: ReplicaAnswer) => Promise<void>): Promise<ReplicaAnswer> {
    const svc = this.opts.service;
    if (this.opts.mode === 'passive') {
      const applied = (await svc.apply(update)) ?? prepared;
      this.seq = seq;
      await this.ship(l, g, endpoint, update, seq);
      return applied;
    }
    const quorum = Math.max(1, this.opts.quorum ?? 1 + this.targets.filter((t) => t.state === 'synced').length);
    let count = 0;
    let answer: ReplicaAnswer = prepared;
    let sent = false;
    const maybeAnswer = async (): Promise<void> => {
      count++;
      if (!sent && count >= quorum) {
        sent = true;
        await early(answer);
      }
    };
    const local = svc.apply(update).then(async (a) => {
      answer = a ?? prepared;
      this.seq = seq;
      await maybeAnswer();
    });
    await this.ship(l, g, endpoint, update, seq, maybeAnswer);
    await local;
    // Fewer members than the quorum are left: the update is applied by all there are.
    if (!sent) await early(answer);
    return answer;
  }

  /** Sends one update to every target in order; a target that fails is dropped (fenced) first. */
  private async ship(l: Leadership, g: Process, endpoint: Endpoint, update: Uint8Array, seq: number, acked?: () => Promise<void>): Promise<void> {
    let dropped = false;
    for (const t of [...this.targets]) {
      try {
        await this.sendData(g, t.member, RG_APPLY, { epoch: l.epoch, seq }, update);
        if (t.state === 'synced') await acked?.();
      } catch (err) {
        if (!this.targets.includes(t)) continue;
        this.targets = this.targets.filter((x) => x !== t);
        this.log.warn({ node: t.node, err: (err as Error).message }, 'a backup did not take an update: dropped from the group');
        if (t.state === 'synced') {
          const c = (await this.candidates()).find((x) => x.node === t.node);
          if (c !== undefined) await this.dropCandidate(l, c.key);
          dropped = true;
        }
      }
    }
    if (dropped) await this.writeRecord(l, endpoint);
  }

  private async sendData(g: Process, to: Endpoint, type: number, fields: Record<string, Payload>, data: Uint8Array): Promise<void> {
    let r: Message;
    if (data.length <= RG_MAX_INLINE) {
      r = await g.sendrec(to, { type, payload: { ...fields, bytes: data.length, data } }, { timeoutMs: this.opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
    } else {
      const grant = g.grant(data, { grantee: to, access: 'read' });
      try {
        r = await g.sendrec(to, { type, payload: { ...fields, bytes: data.length, grant } }, { timeoutMs: this.opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
      } finally {
        g.revoke(grant);
      }
    }
    if (r.type !== 0) {
      const p = r.payload as { error?: { message?: string } } | null;
      throw new DvsError('EDVSREPLPROC', `member ${to} refused: ${p?.error?.message ?? String(r.type)}`);
    }
  }

  private async answer(g: Process, m: Message, a: ReplicaAnswer): Promise<void> {
    try {
      if (this.opts.service.answer !== undefined) await this.opts.service.answer(g, m, a);
      else await g.reply(m.source, a);
    } catch (err) {
      if (!(err instanceof DvsError)) throw err;
    }
  }

  /** Brings joiners in: a few differing chunks per turn, then RG_SYNCED. */
  private async syncTurn(l: Leadership, g: Process, endpoint: Endpoint): Promise<void> {
    const svc = this.opts.service;
    for (const j of this.joins.splice(0)) {
      this.targets = this.targets.filter((t) => t.node !== j.msg.node);
      this.targets.push({ node: j.msg.node, member: j.member, state: 'syncing', sync: { chunk: j.msg.chunk, hashes: j.msg.hashes, next: 0 } });
      this.log.info({ node: j.msg.node }, 'a member joins');
    }
    const size = await svc.stateSize();
    for (const t of this.targets) {
      const s = t.sync;
      if (t.state !== 'syncing' || s === undefined) continue;
      try {
        let sent = 0;
        while (sent < CHUNKS_PER_TURN && s.next * s.chunk < size) {
          const offset = s.next * s.chunk;
          const data = await svc.readState(offset, Math.min(s.chunk, size - offset));
          const theirs = s.hashes.subarray(s.next * RG_HASH_BYTES, (s.next + 1) * RG_HASH_BYTES);
          s.next++;
          if (theirs.length === RG_HASH_BYTES && hashOf(data).equals(theirs)) continue;
          await this.sendData(g, t.member, RG_CHUNK, { epoch: l.epoch, seq: this.seq, offset, size }, data);
          sent++;
        }
        if (s.next * s.chunk >= size) {
          if (size === 0 || s.hashes.length / RG_HASH_BYTES !== Math.ceil(size / s.chunk)) await this.sendData(g, t.member, RG_CHUNK, { epoch: l.epoch, seq: this.seq, offset: size, size }, new Uint8Array(0));
          const r = await g.sendrec(t.member, { type: RG_SYNCED, payload: { epoch: l.epoch, seq: this.seq } }, { timeoutMs: this.opts.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS });
          if (r.type !== 0) throw new DvsError('EDVSREPLPROC', `member refused RG_SYNCED (${r.type})`);
          t.state = 'synced';
          delete t.sync;
          await this.writeRecord(l, endpoint);
          this.log.info({ node: t.node, seq: this.seq }, 'a member is synchronised');
        }
      } catch (err) {
        if (isDvsError(err, 'EDVSGRPLEADER')) throw err;
        this.targets = this.targets.filter((x) => x !== t);
        this.log.warn({ node: t.node, err: (err as Error).message }, 'a joining member failed');
      }
    }
  }

  // ---------------------------------------------------------------- the member endpoint

  private async memberLoop(p: Process): Promise<void> {
    while (!this.stopped && p.bound) {
      let m: Message;
      try {
        m = await p.receiveRequest();
      } catch (err) {
        if (isDvsError(err, 'EDVSWOKENUP') || isDvsError(err, 'EDVSTIMEDOUT')) continue;
        if (!this.stopped) this.log.warn({ err: (err as Error).message }, 'replica member endpoint stopped receiving');
        return;
      }
      let out: ReplicaAnswer;
      try {
        out = await this.onMemberMsg(p, m, parseMemberMsg(m.type, m.payload));
      } catch (err) {
        out = errorAnswer(err);
      }
      try {
        await p.reply(m.source, out);
      } catch {
        // the primary gave up on us
      }
    }
  }

  private checkEpoch(epoch: number): void {
    if (epoch < this.knownEpoch) throw new DvsError('EDVSGRPLEADER', `epoch ${epoch} is older than this group's ${this.knownEpoch}: a deposed primary`);
    if (epoch > this.knownEpoch) {
      this.knownEpoch = epoch;
      // A newer primary exists: if this member still thinks it leads, it was deposed.
      if (this.role === 'primary') this.wakeGroup();
    }
  }

  private async onMemberMsg(p: Process, m: Message, msg: MemberMsg): Promise<ReplicaAnswer> {
    const svc = this.opts.service;
    switch (msg.t) {
      case 'primary':
        this.checkEpoch(msg.epoch);
        if (this.role === 'primary' && this.leadership !== undefined && this.leadership.epoch < msg.epoch) this.wakeGroup();
        return okAnswer({ seq: this.seq, synced: this.synced });
      case 'join':
        if (this.role !== 'primary') throw new DvsError('EDVSGRPLEADER', 'not the primary');
        this.joins.push({ msg, member: msg.member });
        this.wakeGroup();
        return okAnswer({});
      case 'apply': {
        this.checkEpoch(msg.epoch);
        if (!this.synced && !this.joining) throw new DvsError('EDVSAGAIN', 'this member has not joined');
        const data = await this.dataOf(p, m, msg);
        await svc.apply(data);
        this.seq = msg.seq;
        return okAnswer({ seq: this.seq });
      }
      case 'chunk': {
        this.checkEpoch(msg.epoch);
        if (!this.joining) throw new DvsError('EDVSAGAIN', 'this member is not joining');
        await svc.writeState(msg.offset, await this.dataOf(p, m, msg), msg.size);
        return okAnswer({});
      }
      case 'synced':
        this.checkEpoch(msg.epoch);
        if (!this.joining) throw new DvsError('EDVSAGAIN', 'this member is not joining');
        await svc.flush?.();
        this.seq = msg.seq;
        this.synced = true;
        this.syncedWaiter?.();
        return okAnswer({ seq: this.seq });
    }
  }

  private async dataOf(p: Process, m: Message, msg: DataMsg): Promise<Uint8Array> {
    if (msg.data !== undefined) return msg.data;
    const buf = Buffer.allocUnsafe(msg.bytes);
    const got = await p.copyFrom({ owner: m.source, grant: msg.grant ?? 0 }, buf);
    if (got !== msg.bytes) throw new DvsError('EDVSINVAL', `the grant held ${got} bytes, not ${msg.bytes}`);
    return buf;
  }
}
