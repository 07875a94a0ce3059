"""What a node does in its role (``node.role``; see docs/cluster.md).

- `router`: where a room lives, for the endpoints a node serves to clients: `LocalRouter`
  (every room in this process: the single-node server) or `ClusterRouter` (placement in
  etcd; rooms on other media nodes reached over gRPC).
- `media`: the cluster side of a node that hosts rooms: registration and load in etcd,
  the internal gRPC server, re-claiming and releasing room records.
"""
