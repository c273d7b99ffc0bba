# The course keypair, one port and server per host (plus a data volume where asked), and the
# hub's floating IP.

locals {
  hosts   = { for h in var.hosts : h.name => h }
  hub     = var.hosts[0].name
  volumes = { for h in var.hosts : h.name => h if h.volume_size > 0 }
}

data "openstack_images_image_v2" "base" {
  name        = var.image_name
  most_recent = true
}

resource "openstack_compute_keypair_v2" "course" {
  name       = var.name
  public_key = var.ssh_public_key
}

resource "openstack_networking_port_v2" "host" {
  for_each           = local.hosts
  name               = each.key
  description        = var.tag
  network_id         = var.network_id
  security_group_ids = [var.secgroup_id]
  tags               = [var.tag]
}

resource "openstack_compute_instance_v2" "host" {
  for_each    = local.hosts
  name        = each.key
  image_id    = data.openstack_images_image_v2.base.id
  flavor_name = each.value.flavor
  key_pair    = openstack_compute_keypair_v2.course.name
  user_data   = each.value.user_data
  metadata = {
    "hubfleet-course" = var.course_name
    "hubfleet-role"   = each.value.role
  }
  tags = [var.tag]

  network {
    port = openstack_networking_port_v2.host[each.key].id
  }
}

resource "openstack_blockstorage_volume_v3" "data" {
  for_each    = local.volumes
  name        = "${each.key}-data"
  size        = each.value.volume_size
  description = var.tag
  metadata = {
    "hubfleet-course" = var.course_name
  }
}

resource "openstack_compute_volume_attach_v2" "data" {
  for_each    = local.volumes
  instance_id = openstack_compute_instance_v2.host[each.key].id
  volume_id   = openstack_blockstorage_volume_v3.data[each.key].id
}

resource "openstack_networking_floatingip_v2" "hub" {
  pool        = var.external_network
  description = var.tag
  tags        = [var.tag]
  # The floating IP can only be associated once the subnet is routed to the external network.
  depends_on = [terraform_data.subnet_ready]
}

resource "terraform_data" "subnet_ready" {
  input = var.subnet_ready
}

resource "openstack_networking_floatingip_associate_v2" "hub" {
  floating_ip = openstack_networking_floatingip_v2.hub.address
  port_id     = openstack_networking_port_v2.host[local.hub].id
}
