// The util the API Maker seed imports as 'utils/Addition'.
export function add(x: number, y: number): number {
    return x + y;
}
