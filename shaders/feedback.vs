// Per-frame constants of feedback.fs, worked out once per vertex instead of once per pixel
// (on a CPU renderer the trigonometry alone cost a quarter of the effect).
varying vec2 fbRot;      // cos, sin of this frame's rotation
varying float fbScale;   // this frame's zoom step
varying float fbKeep;    // share of the echo kept this frame
varying vec2 fbHue;      // cos, sin of this frame's hue drift

void main() {
    isf_vertShaderInit();
    float dt = min(TIMEDELTA, 0.1);               // a stalled frame must not spin the picture away
    float ang = radians(rotate) * dt;
    fbRot = vec2(cos(ang), sin(ang));
    fbScale = pow(zoom, -dt);                     // zoom > 1: sample nearer the centre, picture grows
    fbKeep = (FRAMEINDEX == 0 || decay <= 0.0) ? 0.0 : pow(decay, dt);
    float h = radians(hueDrift) * dt;
    fbHue = vec2(cos(h), sin(h));
}
