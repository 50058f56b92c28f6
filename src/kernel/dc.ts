/** One DC as seen by one kernel: its endpoint space, member nodes, routes and bind watches. */
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import type { DcLimits } from '../ipc/limits.js';
import { RouteTable } from './routes.js';
import type { Waiter } from './waiter.js';

export interface BindWatch {
  /** Resolve on bind of this slot (any generation) or on unbind of this exact endpoint. */
  readonly slot: number;
  readonly endpoint: Endpoint | undefined;
  readonly unbind: boolean;
  readonly waiter: Waiter<Endpoint>;
}

export class DcState {
  readonly dcid: number;
  readonly name: string;
  readonly space: EndpointSpace;
  readonly nodes: Set<number>;
  readonly routes: RouteTable;
  readonly watches = new Set<BindWatch>();

  constructor(dcid: number, name: string, limits: DcLimits, nodes: Iterable<number>) {
    this.dcid = dcid;
    this.name = name;
    this.space = new EndpointSpace(limits);
    this.nodes = new Set(nodes);
    this.routes = new RouteTable(dcid, this.space);
  }

  get limits(): DcLimits {
    return this.space.limits;
  }
}
