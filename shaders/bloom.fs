/*{
    "DESCRIPTION": "Bloom: bright parts glow. A bright pass at half resolution, box downsamples to 1/4 and 1/8, a separable Gaussian at 1/8, added back over the picture. Cheap at any output size.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.1",
    "CATEGORIES": ["Glow", "Blur"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "threshold", "LABEL": "Threshold", "TYPE": "float", "DEFAULT": 0.6, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "intensity", "LABEL": "Intensity", "TYPE": "float", "DEFAULT": 1.2, "MIN": 0.0, "MAX": 4.0, "IDENTITY": 0.0},
        {"NAME": "radius", "LABEL": "Radius", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.25, "MAX": 2.0},
        {"NAME": "tint", "LABEL": "Glow tint", "TYPE": "color", "DEFAULT": [1.0, 0.95, 0.9, 1.0]}
    ],
    "PASSES": [
        {"TARGET": "brightPass", "WIDTH": "max(floor($WIDTH/2), 1)", "HEIGHT": "max(floor($HEIGHT/2), 1)"},
        {"TARGET": "down4", "WIDTH": "max(floor($WIDTH/4), 1)", "HEIGHT": "max(floor($HEIGHT/4), 1)"},
        {"TARGET": "down8", "WIDTH": "max(floor($WIDTH/8), 1)", "HEIGHT": "max(floor($HEIGHT/8), 1)"},
        {"TARGET": "blurH", "WIDTH": "max(floor($WIDTH/8), 1)", "HEIGHT": "max(floor($HEIGHT/8), 1)"},
        {"TARGET": "blurV", "WIDTH": "max(floor($WIDTH/8), 1)", "HEIGHT": "max(floor($HEIGHT/8), 1)"},
        {}
    ]
}*/

// Four bilinear taps one source texel off the centre: a 4x4 tent-weighted box, for halving sizes.
vec4 down(vec4 a, vec4 b, vec4 c, vec4 d) {
    return 0.25 * (a + b + c + d);
}

// Weights and offsets of a 9-tap Gaussian done as 5 bilinear taps.
const float W0 = 0.2270270270;
const float W1 = 0.3162162162;
const float W2 = 0.0702702703;
const float O1 = 1.3846153846;
const float O2 = 3.2307692308;

void main() {
    vec2 uv = isf_FragNormCoord;
    if (PASSINDEX == 0) {
        // At half size one bilinear tap averages a 2x2 block of the input for free.
        vec3 c = IMG_NORM_PIXEL(inputImage, uv).rgb;
        float luma = dot(c, vec3(0.2126, 0.7152, 0.0722));
        float w = smoothstep(threshold, threshold + 0.2, luma);
        gl_FragColor = vec4(c * w, 1.0);
    } else if (PASSINDEX == 1) {
        vec2 t = 1.0 / IMG_SIZE(brightPass);
        gl_FragColor = down(IMG_NORM_PIXEL(brightPass, uv + vec2(-t.x, -t.y)), IMG_NORM_PIXEL(brightPass, uv + vec2(t.x, -t.y)),
                            IMG_NORM_PIXEL(brightPass, uv + vec2(-t.x, t.y)), IMG_NORM_PIXEL(brightPass, uv + vec2(t.x, t.y)));
    } else if (PASSINDEX == 2) {
        vec2 t = 1.0 / IMG_SIZE(down4);
        gl_FragColor = down(IMG_NORM_PIXEL(down4, uv + vec2(-t.x, -t.y)), IMG_NORM_PIXEL(down4, uv + vec2(t.x, -t.y)),
                            IMG_NORM_PIXEL(down4, uv + vec2(-t.x, t.y)), IMG_NORM_PIXEL(down4, uv + vec2(t.x, t.y)));
    } else if (PASSINDEX == 3) {
        vec2 o = vec2(radius / IMG_SIZE(down8).x, 0.0);
        gl_FragColor = IMG_NORM_PIXEL(down8, uv) * W0
            + (IMG_NORM_PIXEL(down8, uv + o * O1) + IMG_NORM_PIXEL(down8, uv - o * O1)) * W1
            + (IMG_NORM_PIXEL(down8, uv + o * O2) + IMG_NORM_PIXEL(down8, uv - o * O2)) * W2;
    } else if (PASSINDEX == 4) {
        vec2 o = vec2(0.0, radius / IMG_SIZE(blurH).y);
        gl_FragColor = IMG_NORM_PIXEL(blurH, uv) * W0
            + (IMG_NORM_PIXEL(blurH, uv + o * O1) + IMG_NORM_PIXEL(blurH, uv - o * O1)) * W1
            + (IMG_NORM_PIXEL(blurH, uv + o * O2) + IMG_NORM_PIXEL(blurH, uv - o * O2)) * W2;
    } else {
        vec4 c = IMG_THIS_PIXEL(inputImage);
        // A tight core from the 1/4 image and the wide halo from the blurred 1/8 image.
        vec3 glow = (0.35 * IMG_NORM_PIXEL(down4, uv).rgb + IMG_NORM_PIXEL(blurV, uv).rgb) * tint.rgb * intensity;
        gl_FragColor = vec4(c.rgb + glow, c.a);
    }
}
