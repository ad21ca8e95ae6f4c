// (s - rowmax(s) + 1) @ v with a symbolic batch: s [?, 20, 24], v [?, 24, 40]
func.func @pv(%s: tensor<?x20x24xf32>, %v: tensor<?x24x40xf32>) -> tensor<?x20x40xf32> {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.0 : f32
  %ninf = arith.constant 0xFF800000 : f32
  %b = tensor.dim %s, %c0 : tensor<?x20x24xf32>
  %e_max = tensor.empty(%b) : tensor<?x20xf32>
  %init_max = linalg.fill ins(%ninf : f32) outs(%e_max : tensor<?x20xf32>) -> tensor<?x20xf32>
  %max = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%s : tensor<?x20x24xf32>) outs(%init_max : tensor<?x20xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %out : f32
    linalg.yield %m : f32
  } -> tensor<?x20xf32>
  %e_p = tensor.empty(%b) : tensor<?x20x24xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%s, %max : tensor<?x20x24xf32>, tensor<?x20xf32>) outs(%e_p : tensor<?x20x24xf32>) {
  ^bb0(%in: f32, %mx: f32, %out: f32):
    %d = arith.subf %in, %mx : f32
    %one = arith.constant 1.0 : f32
    %d1 = arith.addf %d, %one : f32
    linalg.yield %d1 : f32
  } -> tensor<?x20x24xf32>
  %e_r = tensor.empty(%b) : tensor<?x20x40xf32>
  %init_r = linalg.fill ins(%zero : f32) outs(%e_r : tensor<?x20x40xf32>) -> tensor<?x20x40xf32>
  %r = linalg.batch_matmul ins(%p, %v : tensor<?x20x24xf32>, tensor<?x24x40xf32>) outs(%init_r : tensor<?x20x40xf32>) -> tensor<?x20x40xf32>
  return %r : tensor<?x20x40xf32>
}
