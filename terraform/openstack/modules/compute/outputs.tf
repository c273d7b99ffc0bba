output "hosts" {
  description = "One object per host, in the order given (hub first)."
  value = [for h in var.hosts : {
    name            = h.name
    role            = h.role
    id              = openstack_compute_instance_v2.host[h.name].id
    address         = h.name == local.hub ? openstack_networking_floatingip_v2.hub.address : openstack_compute_instance_v2.host[h.name].access_ip_v4
    private_address = openstack_compute_instance_v2.host[h.name].access_ip_v4
    ssh_user        = var.ssh_user
    volume_id       = h.volume_size > 0 ? openstack_blockstorage_volume_v3.data[h.name].id : ""
  }]
}

output "floating_ip" {
  description = "The hub's floating IP."
  value       = openstack_networking_floatingip_v2.hub.address
}
