/**
 * Kernels of several nodes in one OS process, linked in memory: frames are delivered on a later
 * microtask, in order per link. For demos and tests of whole-cluster behaviour in one process.
 */
import type { KernelFrame, KernelTransport } from '../kernel/frames.js';
import type { Kernel } from '../kernel/kernel.js';

export class LoopbackNetwork {
  private readonly kernels = new Map<number, Kernel>();

  /** The transport a kernel of `node` should be built with. */
  transportFor(node: number): KernelTransport {
    return {
      send: (to: number, frame: KernelFrame) => {
        queueMicrotask(() => {
          const k = this.kernels.get(to);
          if (k !== undefined) k.receiveFrame(node, frame);
        });
      },
    };
  }

  attach(kernel: Kernel): void {
    this.kernels.set(kernel.nodeId, kernel);
  }

  /** Takes a node off the network; the others see it down. */
  detach(node: number): void {
    this.kernels.delete(node);
    for (const k of this.kernels.values()) k.nodeDown(node);
  }
}
