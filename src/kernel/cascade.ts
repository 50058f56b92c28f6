/**
 * The unbind cascade: when an endpoint goes (unbound here, its descriptor dropped, its node down or
 * out of the DC), everyone waiting on it learns it with the error the contract gives: senders
 * queued on it, receivers from it, sendrec callers waiting for its reply, calls parked for it.
 */
import { ANY, type Endpoint } from '../ipc/endpoint.js';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';
import type { KernelCore } from './core.js';
import type { DcState } from './dc.js';
import { RecvMode, type LocalProc } from './proc.js';
import type { Route } from './routes.js';

export class Cascade {
  constructor(private readonly k: KernelCore) {}

  /** Unbinds a local process; with `broadcast`, the other nodes of the DC are told (`unbound`). */
  unbindLocal(dc: DcState, proc: LocalProc, broadcast: boolean): void {
    if (!proc.alive) return;
    proc.alive = false;
    const route = dc.routes.at(proc.slot);
    dc.routes.clear(proc.slot);
    if (route?.kind === 'frozen') this.k.moves.failParked(route, 'EDVSDSTDIED');
    const ep = proc.endpoint;
    // Senders queued on the dying process learn it died.
    const box = proc.mailbox;
    for (let rec = box.head; rec !== undefined; rec = box.head) {
      box.dequeue(rec);
      const code: DvsErrorCode = rec.sendrec ? 'EDVSDEADSRCDST' : 'EDVSDSTDIED';
      switch (rec.kind) {
        case 'local-send':
          rec.sender.sending--;
          rec.waiter.reject(new DvsError(code, undefined, { details: { endpoint: ep } }));
          break;
        case 'local-sendrec': {
          const sender = rec.sender;
          sender.sending--;
          const w = sender.recv;
          sender.recv = undefined;
          w?.waiter.reject(new DvsError(code, undefined, { details: { endpoint: ep } }));
          break;
        }
        case 'remote':
          this.k.remote.unindex(rec);
          this.k.emit(rec.node, { k: 'send-ack', dc: dc.dcid, id: rec.id, rc: new DvsError(code).errno });
          break;
      }
    }
    // The process's own calls end.
    const shutdown = (): DvsError => new DvsError('EDVSSHUTDOWN', 'endpoint unbound', { details: { endpoint: ep } });
    for (const other of dc.routes.locals()) {
      const obox = other.mailbox;
      for (let rec = obox.head; rec !== undefined; ) {
        const next = rec.next;
        if (rec.kind !== 'remote' && rec.sender === proc) {
          obox.dequeue(rec);
          if (rec.kind === 'local-send') rec.waiter.reject(shutdown());
        }
        rec = next;
      }
    }
    this.k.moves.dropParkedOf(dc, proc, shutdown);
    this.k.remote.failProc(proc, shutdown);
    proc.sending = 0;
    const w = proc.recv;
    proc.recv = undefined;
    // A silenced incarnation's code let go: its pending receive never settles.
    if (!proc.silent) w?.waiter.reject(shutdown());
    box.notifies = undefined;
    box.owed = undefined;
    proc.grants = undefined;
    const inst = dc.routes.instancesOf(ep);
    // One instance of a group: only the calls it had taken fail (and go to another member).
    if (inst !== undefined) this.k.instances.localGone(dc, inst);
    else this.failWaitersOn(dc, ep);
    if (broadcast && this.k.transport !== undefined) {
      for (const node of dc.nodes) if (node !== this.k.nodeId && !this.k.downNodes.has(node)) this.k.emit(node, { k: 'unbound', dc: dc.dcid, ep });
    }
    this.k.fireWatches(dc, proc.slot);
    this.k.observer?.unbound?.(dc.dcid, ep);
  }

  /** Drops a route to an endpoint owned elsewhere; those waiting on it fail. */
  dropRemote(dc: DcState, route: Route): void {
    if (dc.routes.at(route.slot) === route) dc.routes.clear(route.slot);
    if (route.kind === 'frozen') this.k.moves.failParked(route, 'EDVSDSTDIED');
    this.failWaitersOn(dc, route.endpoint);
    this.k.fireWatches(dc, route.slot);
  }

  /** Everyone local waiting on `ep` (receiving from it, awaiting its reply, queued as it) is told it died. */
  failWaitersOn(dc: DcState, ep: Endpoint, ownerSaidSo = false): void {
    for (const p of dc.routes.locals()) {
      const w = p.recv;
      if (w !== undefined && w.from === ep) {
        if (w.mode === RecvMode.Receive) {
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSSRCDIED', undefined, { details: { endpoint: ep } }));
        } else if (w.mode === RecvMode.SendrecReply) {
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep } }));
        } else if (w.mode === RecvMode.SendrecSending && ownerSaidSo) {
          // A remote sendrec the dead server had taken: its implied ack (the reply) will never come.
          // (Requests still queued there were already answered with an error, ahead of this news.)
          const op = this.k.remote.sendrecOp(p, ep);
          if (op !== undefined) {
            this.k.remote.outstanding.delete(op.id);
            p.sending--;
          }
          p.recv = undefined;
          w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep } }));
        }
      }
      p.mailbox.owed?.forget(ep);
      const box = p.mailbox;
      for (let rec = box.head; rec !== undefined; ) {
        const next = rec.next;
        if (rec.src === ep && rec.kind === 'remote') {
          box.dequeue(rec);
          this.k.remote.unindex(rec);
        }
        rec = next;
      }
    }
  }

  /** `node` is unreachable (down, or out of `only`): every call waiting on it fails with `code`. */
  failNode(node: number, code: DvsErrorCode, only: DcState | undefined): void {
    this.k.remote.failNode(node, code, only);
    for (const dc of only === undefined ? this.k.dcs.values() : [only]) {
      for (const p of dc.routes.locals()) {
        const w = p.recv;
        if (w !== undefined && w.from !== ANY && (w.mode === RecvMode.Receive || w.mode === RecvMode.SendrecReply)) {
          const e = dc.routes.at(dc.space.slotOf(w.from));
          // By the reply's node too: the directory may have dropped the server's descriptor already.
          if ((e?.kind === 'remote' && e.node === node) || w.node === node) {
            p.recv = undefined;
            w.waiter.reject(new DvsError(code, undefined, { details: { endpoint: w.from, node } }));
          }
        }
        p.mailbox.owed?.forgetNode(node);
        const box = p.mailbox;
        for (let rec = box.head; rec !== undefined; ) {
          const next = rec.next;
          if (rec.kind === 'remote' && rec.node === node) {
            box.dequeue(rec);
            this.k.remote.unindex(rec);
          }
          rec = next;
        }
      }
      this.k.moves.failParkedFrom(dc, node);
    }
  }
}
