/**
 * The map as one self-contained HTML page: the data, the styles and a small
 * force-directed graph in plain JavaScript, all inline (no CDN, no fonts, no
 * network), so it works offline and from a file. The layout is computed
 * before the first paint, so the page shows the graph at once; then nodes
 * can be dragged, the view zoomed and panned, nodes searched, and a node or
 * edge clicked for its details (ports, flows, bytes, first and last seen,
 * what the policy would do).
 */
import type { FlowMap } from './map.js';
import { humanBytes, nodeColors, shortTime } from './map-render.js';

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The page's data: the map plus what the page draws with (colors, per-node flows). */
function pageData(m: FlowMap) {
  const flowsOf = new Map<string, number>();
  for (const e of m.edges) {
    flowsOf.set(e.from, (flowsOf.get(e.from) ?? 0) + e.flows);
    flowsOf.set(e.to, (flowsOf.get(e.to) ?? 0) + e.flows);
  }
  const colors = nodeColors(m.nodes);
  return {
    by: m.by,
    first: m.first ? shortTime(m.first) : '',
    last: m.last ? shortTime(m.last) : '',
    nodes: m.nodes.map((n) => ({ ...n, color: colors.get(n.id)!, flows: flowsOf.get(n.id) ?? 0 })),
    edges: m.edges.map((e) => ({ ...e, firstText: shortTime(e.first), lastText: shortTime(e.last), bytesText: humanBytes(e.bytes) })),
  };
}

const STYLE = `
*{box-sizing:border-box}html,body{margin:0;height:100%;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;background:#fafafa}
body{display:flex;flex-direction:column}
header{display:flex;gap:8px 16px;align-items:center;padding:8px 14px;background:#1f2d3d;color:#fff;flex-wrap:wrap;flex:none}
header h1{font-size:15px;margin:0;font-weight:600}header .stats{opacity:.85}
header input[type=search]{padding:4px 8px;border-radius:4px;border:0;width:200px}
header label{display:flex;gap:4px;align-items:center;cursor:pointer}
button{background:#3c5a78;color:#fff;border:0;border-radius:4px;padding:4px 10px;cursor:pointer}
main{flex:1;display:flex;min-height:0}
#graph{flex:1;position:relative;overflow:hidden}#svg{width:100%;height:100%;display:block;cursor:grab;background:#fff}
#svg.panning{cursor:grabbing}
.node circle,.node rect{stroke:#333;stroke-width:1}.node.unknown circle,.node.unknown rect{stroke-dasharray:3 2}
.node text{font-size:11px;fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px;pointer-events:none}
.node{cursor:pointer}.edge{fill:none;stroke-opacity:.65;cursor:pointer}.edge:hover{stroke-opacity:1}
.dim{opacity:.12}.sel circle,.sel rect{stroke:#000;stroke-width:3}
aside{width:320px;border-left:1px solid #ddd;background:#fff;overflow:auto;padding:12px}
aside h2{font-size:14px;margin:0 0 6px}aside table{border-collapse:collapse;width:100%;margin:6px 0}
aside td,aside th{text-align:left;padding:2px 4px;border-bottom:1px solid #eee;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;margin:1px;background:#eef}
.tag.bad{background:#fdd;color:#900}.tag.warn{background:#ffe6cc;color:#8a4b00}.tag.ext{background:#eee}
#legend{position:absolute;left:10px;bottom:10px;background:rgba(255,255,255,.92);border:1px solid #ddd;border-radius:6px;padding:6px 10px;font-size:11px}
#legend div{display:flex;align-items:center;gap:6px;margin:2px 0}#legend i{display:inline-block;width:22px;height:3px}#legend svg{width:14px;height:14px;flex:none}
#tip{position:absolute;pointer-events:none;background:rgba(20,20,20,.88);color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;display:none;max-width:360px}
.muted{color:#777}
`;

const SCRIPT = `
(function(){
var D=JSON.parse(document.getElementById('map-data').textContent);
var NS='http://www.w3.org/2000/svg';
var svg=document.getElementById('svg'),root=document.getElementById('root'),edgeLayer=document.getElementById('edges'),nodeLayer=document.getElementById('nodes');
var tip=document.getElementById('tip'),panel=document.getElementById('panel');
var nodes=D.nodes,edges=D.edges,byId={};
var small=nodes.length>100?0.5:nodes.length>40?0.75:1;
nodes.forEach(function(n,i){byId[n.id]=n;n.index=i;n.deg=0;n.r=(5+Math.min(13,Math.log(1+n.flows)*1.3))*small;});
edges.forEach(function(e){e.s=byId[e.from];e.t=byId[e.to];e.s.deg++;e.t.deg++;e.w=(0.8+Math.min(5,Math.log(1+e.flows)*0.5))*(small<1?0.7:1);
 e.color=e.verdicts&&e.verdicts.blocked?'#d62728':(e.verdicts&&e.verdicts['potentially-blocked']?'#ff7f0e':'#7a8694');});
// Layout: seeded positions on a spiral, then a force simulation (repulsion, springs, gravity), run before the first paint.
var W=Math.max(600,Math.sqrt(nodes.length)*160);
nodes.forEach(function(n,i){var a=i*2.399963,r=12*Math.sqrt(i+1)*Math.max(1,W/600);n.x=Math.cos(a)*r;n.y=Math.sin(a)*r;n.vx=0;n.vy=0;});
var REP=2600*(1+nodes.length/50),SPRING=110*(1+nodes.length/150);
function step(alpha){
 var i,j,n=nodes.length;
 for(i=0;i<n;i++){var a=nodes[i];for(j=i+1;j<n;j++){var b=nodes[j],dx=a.x-b.x,dy=a.y-b.y,d2=dx*dx+dy*dy+0.01;if(d2>4e6)continue;var f=REP/d2*alpha;a.vx+=dx*f;a.vy+=dy*f;b.vx-=dx*f;b.vy-=dy*f;}}
 edges.forEach(function(e){var dx=e.t.x-e.s.x,dy=e.t.y-e.s.y,d=Math.sqrt(dx*dx+dy*dy)+0.01,k=(d-SPRING)/d*0.06*alpha;e.s.vx+=dx*k;e.s.vy+=dy*k;e.t.vx-=dx*k;e.t.vy-=dy*k;});
 nodes.forEach(function(a){if(a.fixed){a.vx=a.vy=0;return;}a.vx-=a.x*0.004*alpha;a.vy-=a.y*0.004*alpha;a.vx*=0.6;a.vy*=0.6;a.x+=Math.max(-40,Math.min(40,a.vx));a.y+=Math.max(-40,Math.min(40,a.vy));});
}
var iters=nodes.length>600?120:350;for(var it=0;it<iters;it++)step(1-it/iters*0.7);
// Drawing.
function el(tag,attrs,parent){var x=document.createElementNS(NS,tag);for(var k in attrs)x.setAttribute(k,attrs[k]);if(parent)parent.appendChild(x);return x;}
edges.forEach(function(e){e.el=el('path',{'class':'edge','stroke':e.color,'marker-end':'url(#arrow-'+(e.color==='#d62728'?'red':e.color==='#ff7f0e'?'orange':'grey')+')'},edgeLayer);
 e.el.addEventListener('mousemove',function(ev){showTip(ev,edgeTip(e));});e.el.addEventListener('mouseleave',hideTip);
 e.el.addEventListener('click',function(ev){ev.stopPropagation();select(null,e);});});
nodes.forEach(function(n){var g=el('g',{'class':'node'+(n.unknown?' unknown':'')},nodeLayer);n.el=g;
 if(n.kind==='iplist'||n.kind==='external'){el('rect',{x:-n.r,y:-n.r,width:2*n.r,height:2*n.r,rx:3,fill:n.color,transform:'rotate(45)'},g);}
 else el('circle',{r:n.r,fill:n.color},g);
 var t=el('text',{x:n.r+3,y:4},g);t.textContent=n.label;
 g.addEventListener('mousemove',function(ev){showTip(ev,nodeTip(n));});g.addEventListener('mouseleave',hideTip);
 g.addEventListener('pointerdown',function(ev){ev.stopPropagation();dragStart(ev,n);});
 g.addEventListener('click',function(ev){ev.stopPropagation();if(!moved)select(n,null);});});
function edgePath(e){var dx=e.t.x-e.s.x,dy=e.t.y-e.s.y,d=Math.sqrt(dx*dx+dy*dy)||1;
 if(e.s===e.t){var x=e.s.x,y=e.s.y-e.s.r*s,l=30*s;return 'M'+x+','+y+' c'+(-l)+','+(-1.3*l)+' '+l+','+(-1.3*l)+' 0,0';}
 var ex=e.t.x-dx/d*(e.t.r+3)*s,ey=e.t.y-dy/d*(e.t.r+3)*s,mx=(e.s.x+ex)/2-dy*0.08,my=(e.s.y+ey)/2+dx*0.08;
 return 'M'+e.s.x+','+e.s.y+' Q'+mx+','+my+' '+ex+','+ey;}
function draw(){edges.forEach(function(e){e.el.setAttribute('d',edgePath(e));e.el.setAttribute('stroke-width',String(e.w*s));});nodes.forEach(function(n){n.el.setAttribute('transform','translate('+n.x+','+n.y+') scale('+s+')');});}
// View: fit, zoom, pan.
// Nodes and labels keep their size on screen whatever the zoom (s is the screen scale of a node).
var view={x:0,y:0,k:1},s=1;function apply(){root.setAttribute('transform','translate('+view.x+','+view.y+') scale('+view.k+')');s=1/view.k;draw();}
function fit(){var b={x0:1e9,y0:1e9,x1:-1e9,y1:-1e9};nodes.forEach(function(n){b.x0=Math.min(b.x0,n.x);b.y0=Math.min(b.y0,n.y);b.x1=Math.max(b.x1,n.x);b.y1=Math.max(b.y1,n.y);});
 if(!nodes.length){b={x0:-100,y0:-100,x1:100,y1:100};}
 // Room on screen for the node radii and labels: 40 px around, 150 px on the right.
 var r=svg.getBoundingClientRect(),w=r.width||900,h=r.height||600,k=Math.min((w-190)/Math.max(1,b.x1-b.x0),(h-80)/Math.max(1,b.y1-b.y0),2.5);
 b.x1+=110/k;b.x0-=40/k;
 view.k=k;view.x=w/2-k*(b.x0+b.x1)/2;view.y=h/2-k*(b.y0+b.y1)/2;apply();}
svg.addEventListener('wheel',function(ev){ev.preventDefault();var r=svg.getBoundingClientRect(),px=ev.clientX-r.left,py=ev.clientY-r.top,f=Math.exp(-ev.deltaY*0.0015),k=Math.max(0.05,Math.min(8,view.k*f));
 view.x=px-(px-view.x)*k/view.k;view.y=py-(py-view.y)*k/view.k;view.k=k;apply();},{passive:false});
var drag=null,moved=false;
function dragStart(ev,n){drag={n:n,x:ev.clientX,y:ev.clientY,ox:n?n.x:view.x,oy:n?n.y:view.y};moved=false;if(!n)svg.classList.add('panning');svg.setPointerCapture(ev.pointerId);}
svg.addEventListener('pointerdown',function(ev){dragStart(ev,null);});
svg.addEventListener('pointermove',function(ev){if(!drag)return;var dx=ev.clientX-drag.x,dy=ev.clientY-drag.y;if(Math.abs(dx)+Math.abs(dy)>3)moved=true;
 if(drag.n){drag.n.x=drag.ox+dx/view.k;drag.n.y=drag.oy+dy/view.k;drag.n.fixed=true;draw();}else{view.x=drag.ox+dx;view.y=drag.oy+dy;apply();}});
svg.addEventListener('pointerup',function(){var wasPan=drag&&!drag.n;drag=null;svg.classList.remove('panning');if(wasPan&&!moved)select(null,null);});
// Tooltips and the details panel.
function esc(s){return String(s).replace(/[&<>"]/g,function(c){return{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
function labelsText(n){var k=Object.keys(n.labels);return k.length?k.map(function(x){return x+'='+n.labels[x];}).join(', '):'';}
function nodeTip(n){return '<b>'+esc(n.label)+'</b><br>'+esc(n.kind)+(n.external?' · external':'')+(n.unknown?' · unknown':'')+'<br>'+esc(labelsText(n))+'<br>'+n.flows+' flows';}
function edgeTip(e){return '<b>'+esc(e.s.label)+' → '+esc(e.t.label)+'</b><br>'+esc(e.ports.slice(0,6).map(function(p){return p.name;}).join(', '))+'<br>'+e.flows+' flows, '+esc(e.bytesText);}
function showTip(ev,html){var r=document.getElementById('graph').getBoundingClientRect();tip.innerHTML=html;tip.style.display='block';tip.style.left=(ev.clientX-r.left+12)+'px';tip.style.top=(ev.clientY-r.top+12)+'px';}
function hideTip(){tip.style.display='none';}
function verdictTags(e){var v=e.verdicts||{},out='';if(v.blocked)out+='<span class="tag bad">blocked '+v.blocked+'</span>';if(v['potentially-blocked'])out+='<span class="tag warn">potentially blocked '+v['potentially-blocked']+'</span>';
 if(v.allowed)out+='<span class="tag">allowed '+v.allowed+'</span>';if(v['not-evaluated'])out+='<span class="tag ext">not evaluated '+v['not-evaluated']+'</span>';if(e.rejected)out+='<span class="tag bad">rejected '+e.rejected+'</span>';return out;}
function edgeRows(list,self){return '<table><tr><th>peer</th><th>ports</th><th>flows</th></tr>'+list.map(function(e){var other=e.s===self?'→ '+esc(e.t.label):'← '+esc(e.s.label);
 return '<tr><td>'+other+'</td><td>'+esc(e.ports.slice(0,3).map(function(p){return p.name;}).join(', '))+'</td><td>'+e.flows+'</td></tr>';}).join('')+'</table>';}
function select(n,e){nodes.forEach(function(x){x.el.classList.remove('sel','dim');});edges.forEach(function(x){x.el.classList.remove('dim');});
 if(n){var near={};near[n.id]=1;edges.forEach(function(x){if(x.s===n||x.t===n){near[x.s.id]=1;near[x.t.id]=1;}else x.el.classList.add('dim');});
  nodes.forEach(function(x){if(!near[x.id])x.el.classList.add('dim');});n.el.classList.add('sel');
  var mine=edges.filter(function(x){return x.s===n||x.t===n;}).sort(function(a,b){return b.flows-a.flows;});
  panel.innerHTML='<h2>'+esc(n.label)+'</h2><div class="muted">'+esc(n.kind)+(n.workloads?' · '+n.workloads+' workload'+(n.workloads>1?'s':''):'')+' · '+n.addresses+' address'+(n.addresses>1?'es':'')+'</div>'+
   (labelsText(n)?'<p>'+Object.keys(n.labels).map(function(k){return '<span class="tag">'+esc(k+'='+n.labels[k])+'</span>';}).join('')+'</p>':'')+
   (n.external?'<span class="tag ext">external</span>':'')+(n.unknown?'<span class="tag ext">unknown</span>':'')+'<p>'+n.flows+' flows</p>'+edgeRows(mine,n);}
 else if(e){e.el.classList.remove('dim');edges.forEach(function(x){if(x!==e)x.el.classList.add('dim');});nodes.forEach(function(x){if(x!==e.s&&x!==e.t)x.el.classList.add('dim');});
  panel.innerHTML='<h2>'+esc(e.s.label)+' → '+esc(e.t.label)+'</h2><p>'+verdictTags(e)+'</p>'+(e.denyingRules&&e.denyingRules.length?'<p class="muted">denied by '+esc(e.denyingRules.join(', '))+'</p>':'')+
   '<p>'+e.flows+' flows · '+e.packets+' packets · '+esc(e.bytesText)+'<br>first seen '+esc(e.firstText)+'<br>last seen '+esc(e.lastText)+' UTC</p>'+
   '<table><tr><th>port</th><th>flows</th><th>bytes</th></tr>'+e.ports.map(function(p){return '<tr><td>'+esc(p.name)+'</td><td>'+p.flows+'</td><td>'+p.bytes+'</td></tr>';}).join('')+'</table>';}
 else panel.innerHTML=document.getElementById('help').innerHTML;}
// Search and filters.
var q=document.getElementById('q'),onlyBad=document.getElementById('only-bad'),hideExt=document.getElementById('hide-ext');
function filter(){var s=q.value.trim().toLowerCase(),bad=onlyBad.checked,ext=hideExt.checked;
 nodes.forEach(function(n){n.hidden=ext&&(n.external||n.kind==='iplist');});
 edges.forEach(function(e){var show=!e.s.hidden&&!e.t.hidden&&(!bad||(e.verdicts&&(e.verdicts.blocked||e.verdicts['potentially-blocked'])));e.el.style.display=show?'':'none';e.shown=show;});
 nodes.forEach(function(n){var hit=!s||n.label.toLowerCase().indexOf(s)>=0||labelsText(n).toLowerCase().indexOf(s)>=0;
  var any=!bad||edges.some(function(e){return e.shown&&(e.s===n||e.t===n);});n.el.style.display=n.hidden||!any?'none':'';n.el.classList.toggle('dim',!hit);});}
[q,onlyBad,hideExt].forEach(function(x){x.addEventListener('input',filter);});
document.getElementById('fit').addEventListener('click',fit);
fit();select(null,null);window.addEventListener('resize',fit);
document.body.setAttribute('data-ready','1');
})();
`;

/** The page. `title` defaults to the map's grouping. */
export function mapHtml(m: FlowMap, title = `bulkhead · application dependency map (by ${m.by})`): string {
  const data = JSON.stringify(pageData(m)).replace(/</g, '\\u003c');
  const stats = `${m.nodes.length} nodes · ${m.edges.length} edges · ${m.flows} flows · ${humanBytes(m.bytes)}` + (m.flows ? ` · ${shortTime(m.first)} – ${shortTime(m.last)} UTC` : '');
  const blocked = m.edges.filter((e) => e.verdicts?.blocked).length;
  const potential = m.edges.filter((e) => !e.verdicts?.blocked && e.verdicts?.['potentially-blocked']).length;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${escapeHtml(title)}</h1>
<span class="stats">${escapeHtml(stats)}</span>
<input id="q" type="search" placeholder="search nodes and labels">
<label><input id="only-bad" type="checkbox"> only what the policy would block (${blocked + potential})</label>
<label><input id="hide-ext" type="checkbox"> hide IP lists and external</label>
<button id="fit" type="button">fit</button>
</header>
<main>
<div id="graph">
<svg id="svg" role="img" aria-label="flow graph">
<defs>
<marker id="arrow-grey" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#7a8694"/></marker>
<marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#d62728"/></marker>
<marker id="arrow-orange" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#ff7f0e"/></marker>
</defs>
<g id="root"><g id="edges"></g><g id="nodes"></g></g>
</svg>
<div id="tip"></div>
<div id="legend">
<div><svg width="14" height="14"><circle cx="7" cy="7" r="6" fill="#4e79a7" stroke="#333"/></svg> ${m.by === 'workload' ? 'workload' : 'group'} (colored by app)</div>
<div><svg width="14" height="14"><rect x="3" y="3" width="8" height="8" fill="#d9d9d9" stroke="#333" transform="rotate(45 7 7)"/></svg> IP list / external</div>
<div><svg width="14" height="14"><circle cx="7" cy="7" r="6" fill="#d9d9d9" stroke="#333" stroke-dasharray="3 2"/></svg> unknown (no workload, no list)</div>
<div><i style="background:#d62728"></i> the policy would block</div>
<div><i style="background:#ff7f0e"></i> potentially blocked (test mode)</div>
<div><i style="background:#7a8694"></i> allowed / not evaluated</div>
</div>
</div>
<aside id="panel"></aside>
</main>
<template id="help"><h2>Details</h2><p class="muted">Click a node or an edge for its ports, flows, bytes, first and last seen, and what the policy would do. Drag nodes; scroll to zoom; drag the background to pan.</p></template>
<script id="map-data" type="application/json">${data}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
