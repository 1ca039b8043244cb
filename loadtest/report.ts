/**
 * Load-test output: a plain-text summary for the terminal and a self-contained HTML page with
 * inline SVG charts (fps, latency, server CPU and RSS, sessions over time). No scripts, no
 * external resources: the file opens anywhere.
 */
import type { LoadResult, Sample } from './run.ts';

const f = (v: number | null | undefined, d = 0): string => (v !== null && v !== undefined && Number.isFinite(v) ? v.toFixed(d) : '–');

export function textSummary(r: LoadResult): string {
  const a = r.aggregate;
  const o = r.options;
  const lines: string[] = [];
  lines.push(`xportrait-live load test, ${r.startedAt}: ${o.url}, renderer ${o.renderer}, driving ${o.driving.name} ${o.driving.width}×${o.driving.height}@${o.driving.fps}, ${f(r.durationS)} s`);
  lines.push('');
  lines.push('session  renderer      out fps  g2g p50/p95/p99 ms   server p50/p95 ms  freezes (ms)  lost (delivered)   srv dropped');
  for (const s of r.sessions) {
    lines.push(
      [
        `${s.index}${s.role === 'probe' ? 'p' : ''}`.padEnd(8),
        s.renderer.padEnd(13),
        f(s.outFps, 1).padStart(7),
        `${f(s.g2g.p50)}/${f(s.g2g.p95)}/${f(s.g2g.p99)}`.padStart(19),
        `${f(s.server?.p50)}/${f(s.server?.p95)}`.padStart(18),
        `${s.freezes} (${s.freezeMs})`.padStart(13),
        `${s.lost ?? '–'} (${s.deliveredPct === null ? '–' : `${f(s.deliveredPct, 1)} %`})`.padStart(17),
        `${s.serverDropped ?? '–'}`.padStart(13),
      ].join(' '),
    );
  }
  const staged = r.sessions.filter((s) => s.stages);
  if (staged.length) {
    lines.push('');
    lines.push('server stage times per session, p50/p95 ms (the session\'s own rolling window):');
    for (const s of staged) lines.push(`  ${s.index}${s.role === 'probe' ? 'p' : ''}: decode ${f(s.stages!.decode.p50, 1)}/${f(s.stages!.decode.p95, 1)}  render ${f(s.stages!.render.p50, 1)}/${f(s.stages!.render.p95, 1)}  encode ${f(s.stages!.encode.p50, 1)}/${f(s.stages!.encode.p95, 1)}`);
  }
  lines.push('');
  lines.push(`aggregate over ${a.sessions} session(s): out fps mean ${f(a.outFpsMean, 1)} / min ${f(a.outFpsMin, 1)}`);
  lines.push(`  glass-to-glass (frame ids): ${a.g2g.count ? `p50 ${f(a.g2g.p50)} / p95 ${f(a.g2g.p95)} / p99 ${f(a.g2g.p99)} ms over ${a.g2g.count} frames` : 'not measurable (the output does not carry the ids: see server-added latency and the probe)'}`);
  if (a.probeG2g) lines.push(`  probe session (passthrough pattern under the same load): p50 ${f(a.probeG2g.p50)} / p95 ${f(a.probeG2g.p95)} / p99 ${f(a.probeG2g.p99)} ms`);
  lines.push(`  server-added latency p95, worst session: ${f(a.serverP95Max)} ms`);
  lines.push(`  freezes (> ${o.freezeMs} ms): ${a.freezes}; lost frames: ${a.lost ?? '–'}${a.deliveredPct !== null ? ` (delivered ${f(a.deliveredPct, 1)} %)` : ''}; server-dropped: ${a.serverDropped}`);
  if (a.serverUdpDrops !== null) lines.push(`  packets the kernel dropped at the server's sockets (receive buffer full: the server short of CPU): ${a.serverUdpDrops}`);
  lines.push(`  server CPU mean ${f(a.serverCpuPctMean)} % / max ${f(a.serverCpuPctMax)} % of one core; RSS start ${f(a.serverRssMiB.start)} / max ${f(a.serverRssMiB.max)} / end ${f(a.serverRssMiB.end)} MiB`);
  lines.push(`  load generator CPU mean ${f(a.loadgenCpuPctMean)} % of one core (same machine: it competes with the server)`);
  if (r.nodes) {
    lines.push('');
    lines.push('per node (through the load balancer):');
    lines.push('  node           sessions  out fps mean/min  g2g p95 ms  server p95 ms  freezes  CPU % mean/max  RSS MiB max');
    for (const n of r.nodes) {
      lines.push(
        `  ${n.node.padEnd(14)} ${String(n.sessions).padStart(8)}  ${`${f(n.outFpsMean, 1)}/${f(n.outFpsMin, 1)}`.padStart(16)}  ${f(n.g2gP95Max).padStart(10)}  ${f(n.serverP95Max).padStart(13)}  ${String(n.freezes).padStart(7)}  ${`${f(n.cpuPctMean)}/${f(n.cpuPctMax)}`.padStart(14)}  ${f(n.rssMiBMax).padStart(11)}`,
      );
    }
  }
  if (r.ramp) {
    lines.push('');
    lines.push(`ramp (SLO: every session ≥ ${o.slo.minFps} fps and latency p95 ≤ ${o.slo.maxP95Ms} ms):`);
    for (const l of r.ramp.levels) {
      const spread = l.perNode ? ` [${Object.entries(l.perNode).map(([n, k]) => `${n}: ${k}`).join(', ')}]` : '';
      lines.push(`  ${String(l.sessions).padStart(2)} session(s)${spread}: fps min ${f(l.fpsMin, 1)} mean ${f(l.fpsMean, 1)}, ${l.latencySource} p95 ${f(l.p95Max)} ms, server CPU ${f(l.serverCpuPct)} % ${l.ok ? 'ok' : `✗ ${l.why}`}`);
    }
    lines.push(`  capacity: ${r.ramp.capacity} session(s); stopped because ${r.ramp.limitedBy}`);
  }
  if (a.errors.length) {
    lines.push('');
    lines.push('errors:');
    for (const e of a.errors) lines.push(`  ${e}`);
  }
  return lines.join('\n');
}

interface Series {
  name: string;
  color: string;
  values: Array<[number, number]>;
  dashed?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** One line chart as an SVG string. */
export function lineChart(title: string, unit: string, series: Series[], tMax: number, opts: { yMax?: number; hline?: { y: number; label: string } } = {}): string {
  const W = 860;
  const H = 240;
  const L = 56;
  const R = 16;
  const T = 28;
  const B = 34;
  const all = series.flatMap((s) => s.values.map((v) => v[1])).filter(Number.isFinite);
  const yMax = opts.yMax ?? niceMax(Math.max(1, ...all, opts.hline?.y ?? 0) * 1.05);
  const xs = (t: number) => L + (t / Math.max(1e-9, tMax)) * (W - L - R);
  const ys = (v: number) => T + (1 - Math.min(v, yMax) / yMax) * (H - T - B);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  parts.push(`<text x="${L}" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const y = ys(v);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${L - 6}" y="${y + 4}" text-anchor="end">${+v.toFixed(1)}</text>`);
  }
  const tStep = niceMax(tMax / 8);
  for (let t = 0; t <= tMax + 1e-9; t += tStep) {
    const x = xs(t);
    parts.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eee"/><text x="${x}" y="${H - B + 14}" text-anchor="middle">${+t.toFixed(1)}</text>`);
  }
  parts.push(`<text x="${W - R}" y="${H - 4}" text-anchor="end">time (s)</text><text x="12" y="${T - 8}">${esc(unit)}</text>`);
  if (opts.hline) {
    const y = ys(opts.hline.y);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#c00" stroke-dasharray="6 4"/><text x="${W - R - 4}" y="${y - 4}" text-anchor="end" fill="#c00">${esc(opts.hline.label)}</text>`);
  }
  let legendX = L + 200;
  series = series.filter((s) => s.values.some(([, v]) => Number.isFinite(v)));
  for (const s of series) {
    const segs: string[][] = [[]];
    for (const [t, v] of s.values) {
      if (!Number.isFinite(v)) {
        if (segs[segs.length - 1].length) segs.push([]);
        continue;
      }
      segs[segs.length - 1].push(`${xs(t).toFixed(1)},${ys(v).toFixed(1)}`);
    }
    for (const seg of segs) {
      if (seg.length === 1) parts.push(`<circle cx="${seg[0].split(',')[0]}" cy="${seg[0].split(',')[1]}" r="2" fill="${s.color}"/>`);
      else if (seg.length > 1) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="4 3"' : ''} points="${seg.join(' ')}"/>`);
    }
    parts.push(`<rect x="${legendX}" y="8" width="14" height="4" fill="${s.color}"/><text x="${legendX + 18}" y="14">${esc(s.name)}</text>`);
    legendX += 28 + s.name.length * 6.2;
  }
  parts.push('</svg>');
  return parts.join('');
}

export function htmlReport(r: LoadResult): string {
  const o = r.options;
  const S = r.samples;
  const tMax = Math.max(1, ...S.map((s) => s.t));
  const pick = (k: keyof Sample): Array<[number, number]> => S.map((s) => [s.t, s[k] as number]);
  const charts = [
    lineChart('Output frame rate per session', 'fps', [
      { name: 'mean', color: '#1f77b4', values: pick('fpsMean') },
      { name: 'worst session', color: '#ff7f0e', values: pick('fpsMin') },
    ], tMax, { hline: { y: o.slo.minFps, label: `SLO ${o.slo.minFps} fps` } }),
    lineChart('Latency', 'ms', [
      { name: 'glass-to-glass p50', color: '#2ca02c', values: pick('g2gP50') },
      { name: 'glass-to-glass p95', color: '#d62728', values: pick('g2gP95') },
      { name: 'server-added p95 (worst)', color: '#9467bd', values: pick('serverP95'), dashed: true },
      { name: 'probe p95', color: '#8c564b', values: pick('probeP95'), dashed: true },
    ], tMax, { hline: { y: o.slo.maxP95Ms, label: `SLO p95 ${o.slo.maxP95Ms} ms` } }),
    lineChart('Server CPU (% of one core) and load-generator CPU', '%', [
      { name: 'server', color: '#1f77b4', values: pick('serverCpuPct') },
      { name: 'load generator', color: '#7f7f7f', values: pick('loadgenCpuPct'), dashed: true },
    ], tMax),
    lineChart('Server resident memory', 'MiB', [{ name: 'RSS', color: '#17becf', values: pick('serverRssMiB') }], tMax),
    lineChart('Server event-loop delay p99', 'ms', [{ name: 'event-loop lag', color: '#bcbd22', values: pick('serverLagMs') }], tMax),
    lineChart('Sessions and freezes', 'count', [
      { name: 'sessions', color: '#000', values: pick('sessions') },
      { name: 'freezes this second', color: '#d62728', values: pick('freezes') },
    ], tMax),
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xportrait-live load test ${esc(r.startedAt)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:920px}pre{background:#f6f6f6;padding:12px;overflow-x:auto;font-size:12px}svg{display:block;margin:12px 0}</style>
</head><body>
<h1>xportrait-live load test</h1>
<p>${esc(r.startedAt)} · ${esc(o.url)} · renderer <b>${esc(o.renderer)}</b> · driving ${esc(o.driving.name)} ${o.driving.width}×${o.driving.height}@${o.driving.fps}</p>
${charts.join('\n')}
<h2>Summary</h2>
<pre>${esc(textSummary(r))}</pre>
</body></html>
`;
}
