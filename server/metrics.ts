/**
 * Prometheus metrics (prom-client) for the whole server. Labels are low-cardinality on purpose
 * (renderer, stage, reason): per-session figures live in the session's own stats, not here.
 * With --node-id every sample also carries the node's name (`node`, a default label set at
 * start), so the series of many nodes stay apart however they are scraped.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { UdpDropCounter } from './rtc/udp-drops.ts';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'xpl_' });

const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1];

const udpDrops = new UdpDropCounter();

export const metrics = {
  sessions: new Gauge({ name: 'xpl_sessions', help: 'Live sessions', labelNames: ['renderer'] as const, registers: [registry] }),
  sessionsCreated: new Counter({ name: 'xpl_sessions_created_total', help: 'Sessions created', registers: [registry] }),
  sessionsClosed: new Counter({ name: 'xpl_sessions_closed_total', help: 'Sessions closed, by reason', labelNames: ['reason'] as const, registers: [registry] }),
  framesIn: new Counter({ name: 'xpl_frames_in_total', help: 'Driving frames decoded', registers: [registry] }),
  framesOut: new Counter({ name: 'xpl_frames_out_total', help: 'Output frames sent', registers: [registry] }),
  framesDropped: new Counter({ name: 'xpl_frames_dropped_total', help: 'Frames dropped by latest-frame-wins back-pressure or the frame-rate cap', registers: [registry] }),
  decodeErrors: new Counter({ name: 'xpl_decode_errors_total', help: 'Driving frames the decoder rejected', registers: [registry] }),
  keyframeRequests: new Counter({ name: 'xpl_keyframe_requests_total', help: 'Keyframes asked of senders after loss, decode errors or overload', registers: [registry] }),
  faceChecks: new Counter({ name: 'xpl_face_frames_total', help: 'Rendered frames by whether the driving face was found', labelNames: ['found'] as const, registers: [registry] }),
  frameBudgetChanges: new Counter({ name: 'xpl_frame_budget_changes_total', help: 'The frame budget\'s cap on every session\'s frame rate lowered (down) or raised (up) (--latency-budget)', labelNames: ['direction'] as const, registers: [registry] }),
  frameBudgetCap: new Gauge({ name: 'xpl_frame_budget_cap_fps', help: 'The frame budget\'s cap on every session\'s frame rate, fps; 0 while none applies (--latency-budget)', registers: [registry] }),
  workerRestarts: new Counter({ name: 'xpl_worker_restarts_total', help: 'Worker threads restarted after a crash or hang', labelNames: ['worker'] as const, registers: [registry] }),
  stageSeconds: new Histogram({ name: 'xpl_stage_seconds', help: 'Per-frame stage latency', labelNames: ['stage'] as const, buckets: STAGE_BUCKETS, registers: [registry] }),
  lcmPackWorkers: new Gauge({ name: 'xpl_lcm_pack_workers', help: 'Shared xportrait-lcm pack worker threads (one per pack folder in use)', registers: [registry] }),
  lcmStreams: new Gauge({ name: 'xpl_lcm_streams', help: 'xportrait-lcm session streams open in the pack workers', registers: [registry] }),
  lcmPackLoads: new Counter({ name: 'xpl_lcm_pack_loads_total', help: 'xportrait-lcm packs loaded into onnxruntime (sessions on a loaded pack share it)', registers: [registry] }),
  loadCores: new Gauge({ name: 'xpl_load_cores', help: 'CPU the server uses (its process and the codec processes it started), in cores, smoothed', registers: [registry] }),
  sessionCostCores: new Gauge({ name: 'xpl_session_cost_cores', help: 'Learnt CPU cost of one session, in cores (0 until measured)', registers: [registry] }),
  capacitySessions: new Gauge({ name: 'xpl_capacity_sessions', help: 'Sessions the CPU budget (--max-load) holds at the learnt cost (0 until measured)', registers: [registry] }),
  admissionsRefused: new Counter({ name: 'xpl_admissions_refused_total', help: 'Sessions refused because the CPU budget could not carry one more', registers: [registry] }),
  draining: new Gauge({ name: 'xpl_node_draining', help: '1 while this node drains (refuses new sessions, exits when its sessions have ended or at the deadline)', registers: [registry] }),
  drainDeadline: new Gauge({ name: 'xpl_node_drain_deadline_seconds', help: 'Unix time at which a draining node closes its remaining sessions (0 when not draining)', registers: [registry] }),
  agentWeight: new Gauge({ name: 'xpl_agent_weight', help: 'Free sessions last reported to the load balancer (agent-check weight; 0 when full or draining)', registers: [registry] }),
  redisUp: new Gauge({ name: 'xpl_redis_up', help: '1 while the shared Redis (--redis) is reachable', registers: [registry] }),
  controlForwarded: new Counter({ name: 'xpl_control_forwarded_total', help: 'Control-socket requests forwarded to the node holding their session, by outcome', labelNames: ['outcome'] as const, registers: [registry] }),
  lcmTorchWorkers: new Gauge({ name: 'xpl_lcm_torch_workers', help: 'xportrait-lcm torch worker processes running and ready (one per device)', registers: [registry] }),
  lcmTorchStreams: new Gauge({ name: 'xpl_lcm_torch_streams', help: 'xportrait-lcm session streams open in the torch workers', registers: [registry] }),
  lcmTorchRestarts: new Counter({ name: 'xpl_lcm_torch_restarts_total', help: 'xportrait-lcm torch workers restarted, by reason (exit: died; hung: killed after a missed heartbeat or an endless batch)', labelNames: ['reason'] as const, registers: [registry] }),
  lcmTorchCalls: new Counter({ name: 'xpl_lcm_torch_calls_total', help: 'Batched per-step calls the torch workers ran', registers: [registry] }),
  lcmTorchRows: new Counter({ name: 'xpl_lcm_torch_rows_total', help: 'Rows (stream × step × CFG branch) in those calls; rows / calls = the batch size', registers: [registry] }),
  udpReceiveDrops: new Counter({
    name: 'xpl_udp_receive_drops_total',
    help: "Datagrams the kernel dropped at this server's UDP sockets because their receive buffer was full (media lost before the server read it: the main thread short of CPU), read from /proc/net/udp at each scrape",
    registers: [registry],
    collect() {
      const gained = udpDrops.gained();
      if (gained) this.inc(gained);
    },
  }),
  eventLoopLag: new Gauge({ name: 'xpl_event_loop_lag_seconds', help: 'Event-loop delay p99 over the last scrape interval', registers: [registry] }),
};

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let lastLagP99 = 0;

/** Event-loop delay p99 (ms) since the previous call; also feeds the gauge. */
export function sampleEventLoopLag(): number {
  lastLagP99 = loopDelay.percentile(99) / 1e6;
  loopDelay.reset();
  metrics.eventLoopLag.set(lastLagP99 / 1000);
  return lastLagP99;
}

export function lastEventLoopLagMs(): number {
  return lastLagP99;
}
