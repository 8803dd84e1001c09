// The background: drifting particles that link when close and lean towards the pointer.
// Cost is capped: at most MAX particles, neighbours found through a grid of LINK-sized cells
// (never all pairs), a capped pixel ratio, no drawing while the tab is hidden, and a single
// still frame when the user prefers reduced motion.

const MAX = 90;
const AREA_PER_PARTICLE = 16_000; // px² of viewport per particle
const LINK = 130; // px; also the grid's cell size
const POINTER_RADIUS = 170;
const COLORS = ["34, 211, 238", "167, 139, 250", "244, 114, 182"];

export function startParticles(canvas) {
  const ctx = canvas.getContext("2d");
  const calm = matchMedia("(prefers-reduced-motion: reduce)");
  const pointer = { x: 0, y: 0, active: false };
  let particles = [];
  let width = 0;
  let height = 0;
  let frame = 0;

  function spawn() {
    const speed = 0.12 + Math.random() * 0.25;
    const angle = Math.random() * Math.PI * 2;
    return {
      x: Math.random() * width,
      y: Math.random() * height,
      vx: Math.cos(angle) * speed,
      vy: Math.sin(angle) * speed,
      r: 0.8 + Math.random() * 1.6,
      color: COLORS[Math.floor(Math.random() * COLORS.length)],
    };
  }

  function resize() {
    const ratio = Math.min(window.devicePixelRatio || 1, 1.5);
    width = window.innerWidth;
    height = window.innerHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const wanted = Math.min(MAX, Math.round((width * height) / AREA_PER_PARTICLE));
    particles = particles.filter((p) => p.x < width && p.y < height).slice(0, wanted);
    while (particles.length < wanted) particles.push(spawn());
    if (calm.matches) draw();
  }

  function move(p) {
    if (pointer.active) {
      const dx = pointer.x - p.x;
      const dy = pointer.y - p.y;
      const d2 = dx * dx + dy * dy;
      if (d2 < POINTER_RADIUS * POINTER_RADIUS && d2 > 1) {
        const pull = 0.012 * (1 - Math.sqrt(d2) / POINTER_RADIUS);
        p.vx += dx * pull * 0.05;
        p.vy += dy * pull * 0.05;
      }
    }
    const speed = Math.hypot(p.vx, p.vy);
    if (speed > 1.2) {
      p.vx *= 1.2 / speed;
      p.vy *= 1.2 / speed;
    }
    p.x += p.vx;
    p.y += p.vy;
    if (p.x < 0 || p.x > width) p.vx *= -1;
    if (p.y < 0 || p.y > height) p.vy *= -1;
  }

  function links() {
    const columns = Math.ceil(width / LINK) + 1;
    const grid = new Map();
    for (const p of particles) {
      const key = Math.floor(p.y / LINK) * columns + Math.floor(p.x / LINK);
      (grid.get(key) || grid.set(key, []).get(key)).push(p);
    }
    ctx.lineWidth = 0.7;
    for (const [key, cell] of grid) {
      // This cell and four neighbours (E, SW, S, SE): each pair of cells is visited once.
      for (const offset of [0, 1, columns - 1, columns, columns + 1]) {
        const other = grid.get(key + offset);
        if (!other) continue;
        for (let i = 0; i < cell.length; i++) {
          for (let j = offset === 0 ? i + 1 : 0; j < other.length; j++) {
            const a = cell[i];
            const b = other[j];
            const d = Math.hypot(a.x - b.x, a.y - b.y);
            if (d > LINK) continue;
            ctx.strokeStyle = `rgba(${a.color}, ${0.28 * (1 - d / LINK)})`;
            ctx.beginPath();
            ctx.moveTo(a.x, a.y);
            ctx.lineTo(b.x, b.y);
            ctx.stroke();
          }
        }
      }
    }
  }

  function draw() {
    ctx.clearRect(0, 0, width, height);
    links();
    for (const p of particles) {
      ctx.fillStyle = `rgba(${p.color}, 0.85)`;
      ctx.beginPath();
      ctx.arc(p.x, p.y, p.r, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  function loop() {
    for (const p of particles) move(p);
    draw();
    frame = requestAnimationFrame(loop);
  }

  function run() {
    cancelAnimationFrame(frame);
    frame = 0;
    if (calm.matches) draw();
    else if (!document.hidden) frame = requestAnimationFrame(loop);
  }

  window.addEventListener("resize", resize);
  window.addEventListener("pointermove", (e) => Object.assign(pointer, { x: e.clientX, y: e.clientY, active: true }), { passive: true });
  document.addEventListener("pointerleave", () => (pointer.active = false));
  document.addEventListener("visibilitychange", run);
  calm.addEventListener("change", run);
  resize();
  run();
}
