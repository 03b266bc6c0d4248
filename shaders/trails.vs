// The per-frame decay of trails.fs, worked out once per vertex instead of once per pixel.
varying float trailKeep;   // share of the trail kept this frame

void main() {
    isf_vertShaderInit();
    float dt = min(TIMEDELTA, 0.1);
    trailKeep = (FRAMEINDEX == 0 || decay <= 0.0) ? 0.0 : pow(decay, dt);
}
