/*{
    "DESCRIPTION": "Motion trails: bright things leave a fading streak (a max-blend with a decaying persistent buffer). Decay is the trail left after one second.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Feedback", "Blur"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "decay", "LABEL": "Trail left after 1 s", "TYPE": "float", "DEFAULT": 0.25, "MIN": 0.0, "MAX": 0.98},
        {"NAME": "amount", "LABEL": "Trail brightness", "TYPE": "float", "DEFAULT": 0.9, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "tint", "LABEL": "Trail tint", "TYPE": "color", "DEFAULT": [1.0, 1.0, 1.0, 1.0]}
    ],
    "PASSES": [
        {"TARGET": "trailBuffer", "PERSISTENT": true, "FLOAT": true},
        {}
    ]
}*/

varying float trailKeep;   // from trails.vs

void main() {
    vec4 cur = IMG_THIS_PIXEL(inputImage);
    if (PASSINDEX == 0) {
        vec4 prev = IMG_THIS_PIXEL(trailBuffer);
        gl_FragColor = max(cur, prev * trailKeep);
    } else {
        vec3 trail = IMG_THIS_PIXEL(trailBuffer).rgb * tint.rgb * amount;
        gl_FragColor = vec4(max(cur.rgb, trail), 1.0);
    }
}
