/**
 * Linux CPU list syntax ("0-3,8,10-11"), as in /sys/devices/system/cpu/online, thread_siblings_list
 * and cgroup cpuset.cpus: parsed into sorted unique CPU ids and rendered back with ranges (the form
 * the kernel reads back, so a rewrite of the same set compares equal).
 */
const MAX_CPU = 4095;

export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  const trimmed = text.trim();
  if (trimmed === '') return [];
  for (const part of trimmed.split(',')) {
    const match = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part.trim());
    if (!match) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from || to > MAX_CPU) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
    for (let cpu = from; cpu <= to; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
