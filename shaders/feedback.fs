/*{
    "DESCRIPTION": "Video feedback: the last frame, zoomed, rotated and hue-shifted, echoes behind the new one, like a camera pointed at its own monitor. Lighten 0 blends the echo in softly, 1 keeps the new frame crisp with bright echoes behind it. Zoom, rotation and hue drift are per second and decay is the echo left after one second, so it looks the same at any frame rate.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.1",
    "CATEGORIES": ["Feedback", "Distortion"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "zoom", "LABEL": "Zoom per second", "TYPE": "float", "DEFAULT": 1.4, "MIN": 0.5, "MAX": 3.0, "IDENTITY": 1.0},
        {"NAME": "rotate", "LABEL": "Rotate (degrees per second)", "TYPE": "float", "DEFAULT": 25.0, "MIN": -180.0, "MAX": 180.0, "IDENTITY": 0.0},
        {"NAME": "hueDrift", "LABEL": "Echo hue drift (degrees per second)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -360.0, "MAX": 360.0, "IDENTITY": 0.0},
        {"NAME": "decay", "LABEL": "Echo left after 1 s", "TYPE": "float", "DEFAULT": 0.3, "MIN": 0.0, "MAX": 0.95},
        {"NAME": "lighten", "LABEL": "Soft / lighten blend", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "wet", "LABEL": "Mix", "TYPE": "float", "DEFAULT": 0.7, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0}
    ],
    "PASSES": [
        {"TARGET": "feedbackBuffer", "PERSISTENT": true, "FLOAT": true},
        {}
    ]
}*/

varying vec2 fbRot;
varying float fbScale;
varying float fbKeep;
varying vec2 fbHue;

// Rotate the chroma plane (YIQ) by the angle whose (cos, sin) is cs: a hue shift that keeps brightness.
vec3 hueRotate(vec3 c, vec2 cs) {
    float y = dot(c, vec3(0.299, 0.587, 0.114));
    float i = dot(c, vec3(0.596, -0.274, -0.322));
    float q = dot(c, vec3(0.211, -0.523, 0.312));
    float i2 = i * cs.x - q * cs.y;
    float q2 = i * cs.y + q * cs.x;
    return vec3(y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2);
}

// Pass 0: the new frame over the warped, decayed previous buffer; pass 1: the buffer mixed over the input.
// The per-frame rotation, zoom step, decay and hue drift come from feedback.vs.
void main() {
    vec4 cur = IMG_THIS_PIXEL(inputImage);
    if (PASSINDEX == 0) {
        vec2 p = (isf_FragNormCoord - 0.5) * RENDERSIZE;  // rotate in pixels so circles stay round
        p = mat2(fbRot.x, fbRot.y, -fbRot.y, fbRot.x) * p * fbScale;
        vec4 prev = IMG_NORM_PIXEL(feedbackBuffer, p / RENDERSIZE + 0.5);
        vec3 echo = max(hueRotate(prev.rgb, fbHue), 0.0);
        vec3 soft = mix(cur.rgb, echo, fbKeep);           // exponential average: smooth smears
        vec3 crisp = max(cur.rgb, echo * fbKeep);         // lighten: bright echoes behind a sharp frame
        gl_FragColor = vec4(mix(soft, crisp, lighten), 1.0);
    } else {
        gl_FragColor = vec4(mix(cur.rgb, IMG_THIS_PIXEL(feedbackBuffer).rgb, wet), 1.0);
    }
}
